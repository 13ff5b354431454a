"""Only what pyproject.toml cannot say: a wheel carries rules/ and migrations/ inside the package.

They live at the repository root, beside ``service/`` (the rule catalogue is reviewed there, and
Alembic expects its own folder). An editable install reads them in place; a wheel copies them to
``service/_bundled/``, where ``service.shipped.shipped_dir`` finds them.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("rules", "migrations")


class BuildPyWithShippedData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # read in place
            return
        for name in SHIPPED:
            for source in sorted(Path(name).rglob("*")):
                if source.is_file() and "__pycache__" not in source.parts:
                    target = Path(self.build_lib, "service", "_bundled", source)
                    self.mkpath(str(target.parent))
                    self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildPyWithShippedData})
