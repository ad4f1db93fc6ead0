"""Optional backends: one place that says whether an extension point's packages import here, and which pip
extra installs them. Export targets, quantization methods and bench runtimes all inherit it."""

from __future__ import annotations

import importlib.util
from typing import Optional

from compact.errors import MissingExtraError


class NeedsPackages:
    name: str = ""
    packages: tuple[str, ...] = ()  # importable module names
    extra: str = ""  # the pip extra that installs them
    kind: str = "backend"  # what the error calls it: "export target", "quantization method", ...

    def _absent(self) -> Optional[str]:
        return next((pkg for pkg in self.packages if importlib.util.find_spec(pkg) is None), None)

    def missing(self) -> Optional[str]:
        """None when usable here, else the reason (the missing package and its extra)."""
        pkg = self._absent()
        return None if pkg is None else f"{pkg} is not installed (pip install 'compact-clip[{self.extra}]')"

    def require(self) -> None:
        pkg = self._absent()
        if pkg is not None:
            raise MissingExtraError(pkg, self.extra, f"the {self.name} {self.kind}")
