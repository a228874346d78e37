"""Installed as `sitecustomize.py` in the CPU rehearsal's wheel target only: every Python process of
the rehearsal (the kit, gunicorn, the worker) then behaves as if the packages named in GPU_KIT_HIDE
were not installed, as on the lent GPU machine, which lacks them and gets no wheel for them
(polars, ultralytics-platform, openvino, ezdxf). A `None` in sys.modules makes `import` fail and
`importlib.util.find_spec` answer None, exactly as for a package that is absent."""
import os
import sys

for _name in filter(None, os.environ.get("GPU_KIT_HIDE", "").split(",")):
    sys.modules.setdefault(_name.strip(), None)  # type: ignore[assignment]
