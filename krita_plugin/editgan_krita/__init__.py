"""EditGAN for Krita: semantic portrait editing through an ``editgan-server`` (see README.md).

Importing the package registers the docker and the actions when running inside Krita. Outside
Krita (tests, packaging) there is no ``krita`` module and nothing is registered.
"""

from . import deps  # noqa: F401  (puts vendored pyzmq/msgpack on sys.path before anything else)

DOCKER_ID = "editgan_krita_docker"


def register(app) -> None:
    """Add the extension (actions) and the docker factory to a ``Krita`` instance."""
    from krita import DockWidgetFactory, DockWidgetFactoryBase

    from .docker import EditGANDocker
    from .extension import EditGANExtension

    app.addExtension(EditGANExtension(app))
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, EditGANDocker))


try:
    from krita import Krita
except ImportError:
    Krita = None

if Krita is not None:
    register(Krita.instance())
