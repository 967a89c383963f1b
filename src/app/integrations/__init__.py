"""Glue for the frameworks that use the data layer (installed with extras, e.g. `app[web]`)."""
