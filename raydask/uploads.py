"""Uploaded files on a node: written where the worker processes import from, then imported.

``Client.upload_file`` and the :class:`raydask.plugins.UploadFile` plugin both
end here, in a Ray worker process of the node.
"""

from __future__ import annotations

import os
import sys

__all__ = ["install_upload"]


def install_upload(name, data, directory, load):
    """On a node: write an uploaded file into ``directory`` (unpacking archives), import it."""
    import importlib

    os.makedirs(directory, exist_ok=True)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    modname, ext = os.path.splitext(name)
    if ext in (".zip", ".egg", ".whl"):
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.extractall(directory)
            tops = {n.split("/")[0] for n in zf.namelist()}
        modules = sorted({os.path.splitext(t)[0] for t in tops if t.endswith(".py") or "." not in t})
    else:
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, os.path.join(directory, name))  # atomic: nodes share this disk here
        modules = [modname] if ext == ".py" else []
    importlib.invalidate_caches()
    if load:
        for mod in modules:
            if mod in sys.modules:
                importlib.reload(sys.modules[mod])
            else:
                importlib.import_module(mod)
    return modules
