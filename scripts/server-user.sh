# Sourced by the scripts that start servers under a directory the caller names. Run by root,
# those servers run as another user (postgres, mysql), who must be able to reach that directory.

# The directory, absolute: the scripts work from /, which every user may enter (a server started
# from a working directory closed to it warns that it cannot change to it).
absolute_dir() { realpath -m -- "$1"; }

# Stop, saying why, when `user` cannot write `dir`: a directory above it is closed to that user,
# as `mktemp -d` makes one.
require_reachable() {
  local dir=$1 user=$2
  if [[ $(id -u) -eq 0 ]] && ! runuser -u "$user" -- test -w "$dir"; then
    echo "$user cannot write $dir: a directory above it is closed to $user (mktemp -d makes" \
      "one so); choose a directory $user can reach, such as /tmp/$(basename "$dir")" >&2
    exit 1
  fi
}
