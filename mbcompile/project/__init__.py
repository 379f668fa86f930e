"""Projects: the generated files a repository commits, declared once.

`config.py` reads and validates the project config (`mbcompile.toml`, or the
`[tool.mbcompile]` table of `pyproject.toml`) into jobs: one spec, its overrides,
the files it becomes. `outputs.py` computes what those files should hold, writes
them (`mbcompile generate`) or compares them with what is committed
(`mbcompile check`).
"""
