"""The promises of the data layer, kept for this package's models: any key, every column type,
enums, exact text, constraints told apart, defaults on every write path."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest
from todo.models import Label, Project, State, Task
from todo.unit_of_work import TodoUnitOfWork

from app.db.errors import ConflictError, ForeignKeyError, InvalidQueryError
from app.db.models import User


def test_a_big_integer_key_numbered_by_the_database_works_in_every_method(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project]
) -> None:
    project = project_factory()
    with uow:
        first = uow.tasks.create({"project_id": project.id, "title": "write"})
        assert isinstance(first.id, int)
        assert uow.tasks.get(first.id) is first
        assert uow.tasks.get(str(first.id)) is first  # as a URL path gives it
        stored = uow.tasks.create_many(
            {"project_id": project.id, "title": f"task {n}"} for n in range(5)
        )
        assert stored == 5
        ids = [task.id for task in uow.tasks.list(order_by=["id"], limit=10)]
        assert len(ids) == 6
        assert ids == sorted(ids)
        updated = uow.tasks.update(first.id, {"title": "rewrite"})
        assert updated.title == "rewrite"
        uow.tasks.delete(ids[-1])
        assert uow.tasks.count() == 5
        with pytest.raises(InvalidQueryError, match="id must be an integer, or its decimal text"):
            uow.tasks.get("01")  # not how a number is written


def test_an_id_past_64_bits_is_refused_naming_the_field(uow: TodoUnitOfWork) -> None:
    with uow, pytest.raises(InvalidQueryError, match="id is out of range"):
        uow.tasks.get(2**63)


def test_a_natural_text_key_and_a_many_to_many_table(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project]
) -> None:
    project = project_factory()
    with uow:
        uow.labels.create_many([{"name": "urgent"}, {"name": "Urgent"}, {"name": "ürgent"}])
        assert uow.labels.get("urgent") is not None
        assert uow.labels.get("URGENT") is None  # exact, whatever the database's collation
        label = uow.labels.get_one("Urgent")
        assert label.color == "#888888"  # the Python default, on the bulk path too
        task = uow.tasks.create({"project_id": project.id, "title": "ship"})
        uow.tasks.label(task.id, "urgent", "ürgent")
        loaded = uow.tasks.get_one(task.id, load=["labels"])
        assert sorted(label.name for label in loaded.labels) == ["urgent", "ürgent"]
        with pytest.raises(ConflictError) as conflict:
            uow.labels.create({"name": "urgent"})
        assert conflict.value.constraint == "pk_todo_labels"


def test_trailing_spaces_and_case_make_different_names(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project]
) -> None:
    for name in ("urgent", "Urgent", "urgent "):
        project_factory(name=name)
    with uow:
        assert uow.projects.count(where={"name": "urgent"}) == 1
        assert uow.projects.count(where={"name": "URGENT"}) == 0
        names = [p.name for p in uow.projects.list(order_by=["name"])]
        assert names == ["Urgent", "urgent", "urgent "]  # by code point


def test_two_composite_unique_keys_are_told_apart_with_fields_in_declared_order(
    uow: TodoUnitOfWork, owner: User, project_factory: Callable[..., Project]
) -> None:
    project_factory(name="home", slug="home")
    with uow:
        with pytest.raises(ConflictError) as same_name, uow.savepoint():
            uow.projects.create({"owner_id": owner.id, "name": "home", "slug": "other"})
        with pytest.raises(ConflictError) as same_slug, uow.savepoint():
            uow.projects.create({"owner_id": owner.id, "name": "other", "slug": "home"})
    assert same_name.value.constraint == "uq_todo_projects_owner_id_name"
    assert same_name.value.fields == ("owner_id", "name")
    assert same_slug.value.constraint == "uq_todo_projects_owner_id_slug"
    assert same_slug.value.fields == ("owner_id", "slug")


def test_a_missing_project_is_a_foreign_key_error(uow: TodoUnitOfWork) -> None:
    with uow, pytest.raises(ForeignKeyError) as refused:
        uow.tasks.create({"project_id": uuid.uuid4(), "title": "orphan"})
    assert refused.value.constraint == "fk_todo_tasks_project_id_todo_projects"
    assert refused.value.fields == ("project_id",)


def test_a_missing_label_in_a_many_to_many_row_and_a_label_still_in_use(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project]
) -> None:
    project = project_factory()
    with uow:
        task = uow.tasks.create({"project_id": project.id, "title": "t"})
        with pytest.raises(ForeignKeyError) as missing, uow.savepoint():
            uow.tasks.label(task.id, "nowhere")
        assert missing.value.constraint == "fk_todo_task_labels_label_name_todo_labels"
        assert missing.value.fields == ("label_name",)
        with pytest.raises(ForeignKeyError) as bulk, uow.savepoint():
            uow.tasks.create_many([{"project_id": uuid.uuid4(), "title": "stray"}])
        assert bulk.value.constraint == "fk_todo_tasks_project_id_todo_projects"


def test_enum_values_and_members_alike_and_nothing_else(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project]
) -> None:
    project = project_factory()
    with uow:
        uow.tasks.create({"project_id": project.id, "title": "a", "state": "doing"})
        uow.tasks.create({"project_id": project.id, "title": "b", "state": State.DOING})
        uow.tasks.create({"project_id": project.id, "title": "c"})
        assert uow.tasks.count(where={"state": "doing"}) == 2
        assert uow.tasks.count(where={"state": State.DOING}) == 2
        assert uow.tasks.count(where={"state__in": ["todo", State.DONE]}) == 1
        with pytest.raises(
            InvalidQueryError, match=r"^state must be one of State: doing, done, todo$"
        ):
            uow.tasks.create({"project_id": project.id, "title": "d", "state": "bogus"})
        with pytest.raises(InvalidQueryError, match="state"):
            uow.tasks.create_many([{"project_id": project.id, "title": "e", "state": "bogus"}])
        with pytest.raises(InvalidQueryError, match="state"):
            uow.tasks.count(where={"state": "bogus"})
        assert {task.state for task in uow.tasks.list()} == {State.DOING, State.TODO}


def test_decimals_are_held_to_their_precision_and_scale_on_every_backend(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project]
) -> None:
    project = project_factory(budget="1234.50")
    assert project.budget == Decimal("1234.50")
    with uow:
        with pytest.raises(InvalidQueryError, match="budget"):
            uow.projects.update(project.id, {"budget": Decimal("1.005")})
        with pytest.raises(InvalidQueryError, match="estimate"):
            uow.tasks.create({"project_id": project.id, "title": "x", "estimate": 12345})
        assert uow.projects.count(where={"budget__gt": "1000"}) == 1
        with pytest.raises(InvalidQueryError, match="budget"):
            uow.projects.count(where={"budget__gt": "a lot"})


def test_json_columns_take_their_callable_default_on_every_write_path(
    uow: TodoUnitOfWork, owner: User
) -> None:
    with uow:
        one = uow.projects.create({"owner_id": owner.id, "name": "one", "slug": "one"})
        uow.projects.create_many([{"owner_id": owner.id, "name": "two", "slug": "two"}])
        three = uow.projects.upsert({"owner_id": owner.id, "name": "three", "slug": "three"})
        uow.projects.upsert_many([{"owner_id": owner.id, "name": "four", "slug": "four"}])
        assert one.settings == {}
        assert three.settings == {}
        stored = {p.name: p.settings for p in uow.projects.list(order_by=["name"])}
        assert stored == {"four": {}, "one": {}, "three": {}, "two": {}}


def test_json_columns_are_refused_in_filters_and_orders(uow: TodoUnitOfWork) -> None:
    with uow:
        with pytest.raises(InvalidQueryError, match="settings"):
            uow.projects.list(where={"settings": {}})
        with pytest.raises(InvalidQueryError, match="settings"):
            uow.projects.list(order_by=["settings"])


def test_upsert_matches_on_the_declared_composite_key(
    uow: TodoUnitOfWork, owner: User, project_factory: Callable[..., Project]
) -> None:
    first = project_factory(name="garden", slug="garden", budget="10")
    with uow:
        again = uow.projects.upsert(
            {"owner_id": owner.id, "name": "garden", "slug": "garden", "budget": "20"}
        )
        assert again.id == first.id
        assert again.budget == Decimal("20.00")
        assert again.slug == "garden"
        assert again.version == first.version + 1
        with pytest.raises(InvalidQueryError, match="unique key"):
            uow.projects.upsert({"name": "x", "slug": "x"}, conflict="slug")


def test_a_model_without_version_or_timestamps_upserts_on_its_key(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project]
) -> None:
    with uow:
        uow.labels.upsert({"name": "later", "color": "#000000"})
        uow.labels.upsert({"name": "later", "color": "#ffffff"})
        uow.labels.upsert_many([{"name": "later", "color": "#123456"}, {"name": "new"}])
        assert uow.labels.get_one("later").color == "#123456"
        assert uow.labels.get_one("new").color == "#888888"
        project = project_factory()
        task = uow.tasks.create({"project_id": project.id, "title": "t"})
        with pytest.raises(InvalidQueryError, match="version"):
            uow.tasks.update(task.id, {"title": "u"}, expected_version=1)


@pytest.mark.parametrize("order", ["due_on", "-estimate", "state", "-id"])
def test_keyset_pages_in_any_order_of_sortable_columns_visit_every_task_once(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project], order: str
) -> None:
    project = project_factory()
    states = list(State)
    rows = [
        {
            "project_id": project.id,
            "title": f"task {n}",
            "due_on": dt.date(2027, 1, 1 + n % 5) if n % 4 else None,
            "estimate": Decimal(n % 7) / 4 if n % 3 else None,
            "state": states[n % 3],
        }
        for n in range(23)
    ]
    with uow:
        uow.tasks.create_many(rows)
        seen: list[int] = []
        cursor = None
        while True:
            page = uow.tasks.paginate(order_by=[order], limit=4, cursor=cursor)
            seen += [task.id for task in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        everything = [task.id for task in uow.tasks.list(order_by=[order], limit=100)]
    assert seen == everything
    assert len(set(seen)) == 23


def test_a_team_method_of_the_repository_class(
    uow: TodoUnitOfWork, project_factory: Callable[..., Project]
) -> None:
    project = project_factory()
    with uow:
        uow.tasks.create_many(
            [
                {"project_id": project.id, "title": "soon", "due_on": dt.date(2027, 1, 2)},
                {"project_id": project.id, "title": "late", "due_on": dt.date(2027, 3, 1)},
                {
                    "project_id": project.id,
                    "title": "done",
                    "due_on": dt.date(2027, 1, 1),
                    "state": State.DONE,
                },
            ]
        )
        due = uow.tasks.due_by(project.id, dt.date(2027, 2, 1))
        assert [task.title for task in due] == ["soon"]
        assert [p.id for p in uow.projects.of_owner(project.owner_id)] == [project.id]


def test_the_repository_of_any_model(uow: TodoUnitOfWork) -> None:
    with uow:
        assert uow.repository(Project) is uow.projects
        assert uow.repository(Task) is uow.tasks
        assert uow.repository(Label) is uow.labels
        assert uow.repository(User) is uow.users
