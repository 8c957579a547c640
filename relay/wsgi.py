"""Entry point: ``gunicorn -c relay/gunicorn.conf.py relay.wsgi:app``.

gevent's monkey-patching must come before anything imports ssl or websocket-client, so
it is the first statement here (gunicorn's gevent worker has already patched by the time
it imports this module; patching twice is harmless).
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

from relay import log  # noqa: E402
from relay.config import RelayConfig  # noqa: E402
from relay.server import create_app  # noqa: E402

config = RelayConfig.from_env(os.environ)
log.configure(config.log_level, config.log_format)
app = create_app(config)
