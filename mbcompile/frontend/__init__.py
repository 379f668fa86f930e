"""Front end: YAML reading, `extends` composition, `--set`, validation into a `Spec`
(pydantic), the conventions profiles as data, and the JSON schema.

`mbcompile.frontend.load.load(path, overrides)` is the entry point.
"""
