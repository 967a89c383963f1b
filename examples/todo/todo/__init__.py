"""A to-do domain built on the data layer through its extension points only: models on
`app.db.models.Base`, a branch of migrations in `migrations/`, repositories, a unit of work
and a FastAPI router. Enabled with `APP_EXTENSIONS=todo` and
`APP_UNIT_OF_WORK=todo.unit_of_work:TodoUnitOfWork` (README "Adding a model")."""

from todo import models as models
