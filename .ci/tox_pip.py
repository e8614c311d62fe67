"""tox's pip (tox.ini ``install_command``): on Linux, torch comes from PyTorch's CPU wheel index.

PyPI's Linux torch wheel is the CUDA build (several GB with its CUDA libraries); the tests need only the CPU
build. When the packages to install name torch and this is Linux, pip is given
``--index-url https://download.pytorch.org/whl/cpu`` with PyPI (or ``$PIP_INDEX_URL``) as the extra index for
torch's own dependencies; every other install, and every install elsewhere (macOS and Windows wheels on PyPI
are CPU builds already), is plain ``pip install``. Set ``NAPARI_UNET_TORCH_INDEX`` to use another torch index
(e.g. ``https://download.pytorch.org/whl/cu124``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"


def pip_command(args: list[str], platform: str = sys.platform, env: dict[str, str] | None = None) -> list[str]:
    """The pip command line tox's ``install_command`` runs for ``args`` on ``platform``."""
    env = dict(os.environ if env is None else env)
    command = [sys.executable, "-m", "pip", "install", *args]
    names_torch = any(re.match(r"torch(?![\w-])", a) for a in args)
    if platform.startswith("linux") and names_torch:
        index = env.get("NAPARI_UNET_TORCH_INDEX", CPU_INDEX)
        command[4:4] = ["--index-url", index, "--extra-index-url", env.get("PIP_INDEX_URL", PYPI)]
    return command


if __name__ == "__main__":
    sys.exit(subprocess.call(pip_command(sys.argv[1:])))
