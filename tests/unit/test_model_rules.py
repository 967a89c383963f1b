"""What a repository needs of a model, checked when its repository is made."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.repositories._values import rules_for


def test_a_model_whose_attribute_is_named_otherwise_than_its_column_is_refused_clearly() -> None:
    """The repository names fields by their columns: a renamed attribute is refused when its
    repository is made, in one line naming both names, not as a TypeError from the model's
    constructor at the first create."""

    class Own(DeclarativeBase):
        pass

    class Renamed(Own):
        __tablename__ = "renamed"
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column("lbl")

    with pytest.raises(TypeError, match=r"^Renamed\.label is stored in column lbl: .* name the"):
        rules_for(Renamed)
