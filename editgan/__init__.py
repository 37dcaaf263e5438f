"""EditGAN: semantic image editing with a StyleGAN2 generator and a segmentation branch.

Pure PyTorch; no sockets, no Qt. The server (``server``) and the Krita plugin (``krita_plugin``)
talk to this package only through :mod:`editgan.editor`.
"""

__version__ = "0.1.0"
