"""Tortoise's user model where the key is a native UUID (PostgreSQL)."""

from tortoise import fields
from tortoise.models import Model


class User(Model):
    id = fields.UUIDField(pk=True)
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
