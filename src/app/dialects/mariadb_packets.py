"""MariaDB: a statement larger than the server takes (`max_allowed_packet`) is refused before
it is sent.

The server reads such a statement only so far, answers ER_NET_PACKET_TOO_LARGE and closes the
connection. When the statement is megabytes over, the client is often still sending when the
connection closes, and the driver reports a lost connection instead (2006): told as
`ConnectionLostError`, which `run_in_transaction` runs again, for a statement that can never
succeed. Here a statement of a megabyte or more is measured against the server's limit, read
once per connection when the first such statement comes, and refused with the server's own
error: the same `InvalidQueryError` every time, and the connection is replaced as after the
server's refusal. Smaller statements are sent as they are, with no query and no measuring.
"""

from __future__ import annotations

# Statements shorter than this are not measured: no server takes less than a megabyte in
# practice (MariaDB's default is 16 MB), and the server's own refusal of one comes whole.
MEASURED_FROM = 1 << 20
LIMIT_QUERY = "SELECT @@max_allowed_packet"
# ER_NET_PACKET_TOO_LARGE, with the server's own words.
TOO_LARGE_ERRNO = 1153
TOO_LARGE_MESSAGE = "Got a packet bigger than 'max_allowed_packet' bytes"


def needs_measuring(command: int, sql: object, query_command: int) -> bool:
    """Whether `sql`, sent as `command`, is a statement long enough to be measured."""
    return command == query_command and isinstance(sql, bytes | str) and len(sql) >= MEASURED_FROM


def over_limit(sql: bytes | str, limit: int) -> bool:
    """Whether the statement, with its command byte, is more than the server takes."""
    size = len(sql) if isinstance(sql, bytes) else len(sql.encode())
    return size + 1 > limit
