"""The configuration: the files in conf/ (`files`, light: `--help` reads it), the allowed
values of choice keys (`choices`), the schema (`schema`) and composing as Hydra does
(`compose`). Only this package and `jobs.task` touch Hydra; imports no other layer but the
runtime."""
