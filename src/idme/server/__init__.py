"""idme's server face: REST + WebSocket over :class:`idme.api.Idme` (``pip install idme[serve]``).

It never imports :mod:`idme.cli`; ``idme serve`` (cli/serve.py) builds the app with :func:`create_app`.
"""

from .app import create_app
from .options import ServerOptions

__all__ = ["ServerOptions", "create_app"]
