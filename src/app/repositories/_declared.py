"""The repositories a unit-of-work class declares (`projects: ProjectRepository`,
`labels: Repository[Label]`), found from its annotations once per class, and each made on its
first use in an open unit (`MadeOnFirstUse`): a unit pays for the repositories it touches, not
for every one its class declares. Both faces use it."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable
from typing import Any

from app.repositories.repository import Repository

_declared: dict[tuple[type[Any], type[Any]], dict[str, Any]] = {}


def declared_attributes(unit: type[Any], kind: type[Any]) -> dict[str, Any]:
    """The attributes a class declares (annotates) as subclasses of `kind`, by name."""
    found = _declared.get((unit, kind))
    if found is None:
        found = _declared[unit, kind] = {
            name: hint
            for name, hint in typing.get_type_hints(unit).items()
            if issubclass(_class_of(hint), kind)
        }
    return found


def _class_of(hint: Any) -> type[Any]:
    """The class of a type hint (`Repository[Label]`: Repository), or `object`."""
    found = hint if isinstance(hint, type) else typing.get_origin(hint)
    return found if isinstance(found, type) else object


def repository_attributes(unit: type[Any]) -> dict[str, type[Repository[Any]]]:
    """The repository classes a unit-of-work class declares, by attribute name: a subclass
    named as such, or `Repository[Model]` (the model's own, `Repository.of`)."""
    found = _repository_classes.get(unit)
    if found is None:
        found = _repository_classes[unit] = {
            name: hint if isinstance(hint, type) else _repository_for(hint)
            for name, hint in declared_attributes(unit, Repository).items()
        }
    return found


def _repository_for(hint: Any) -> type[Repository[Any]]:
    origin, (model,) = typing.get_origin(hint), typing.get_args(hint)
    if origin is Repository:
        return Repository.of(model)
    declared: type[Repository[Any]] = origin.for_model(model)
    return declared


_repository_classes: dict[type[Any], dict[str, type[Repository[Any]]]] = {}


def first_declared_for(unit: type[Any]) -> dict[type[Any], str]:
    """The attribute of each model's own repository on a unit class: the first declared."""
    found = _first_declared.get(unit)
    if found is None:
        found = {}
        for name, repository in repository_attributes(unit).items():
            found.setdefault(repository.model, name)
        _first_declared[unit] = found
    return found


_first_declared: dict[type[Any], dict[type[Any], str]] = {}


class MadeOnFirstUse:
    """A declared repository's class attribute: the first read in an open unit asks the unit
    to make it (`make_repository`), and the unit keeps it until it is opened again."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, unit: Any, owner: type[Any] | None = None) -> Any:
        if unit is None:
            return self
        made = unit.make_repository(self.name)
        unit.__dict__[self.name] = made
        return made


def made_on_first_use(unit: type[Any], names: Iterable[str] | None = None) -> tuple[str, ...]:
    """The declared repository attributes of `unit` (`names`, default: the ones it annotates
    as repositories), each a `MadeOnFirstUse` on the class from now on."""
    found = _lazy_names.get(unit)
    if found is None:
        found = tuple(repository_attributes(unit) if names is None else names)
        for name in found:
            if not isinstance(inspect.getattr_static(unit, name, None), MadeOnFirstUse):
                setattr(unit, name, MadeOnFirstUse(name))
        _lazy_names[unit] = found
    return found


_lazy_names: dict[type[Any], tuple[str, ...]] = {}


def forget_made(unit: Any, names: tuple[str, ...]) -> None:
    """Drop the repositories an earlier opening of `unit` made."""
    held = unit.__dict__
    for name in names:
        held.pop(name, None)
