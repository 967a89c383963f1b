"""Tortoise's user model where the key is 32 hex digits in text (SQLite, MariaDB)."""

from tortoise import fields
from tortoise.models import Model


class User(Model):
    id = fields.CharField(pk=True, max_length=32)
    email = fields.CharField(max_length=320)
    full_name = fields.CharField(max_length=255, null=True)
    hashed_password = fields.CharField(max_length=255)
    is_active = fields.BooleanField()
    is_superuser = fields.BooleanField()
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()
    version = fields.IntField()

    class Meta:
        table = "users"
