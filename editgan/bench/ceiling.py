"""How much of the true label map the demo model's reconstructions still carry.

The 16-shot segmenter is scored against the *render's* labels, but it sees the generator's
reconstruction of the render. Where the reconstruction smears a part (a thin lip, teeth), no
segmenter can find it. This measures that ceiling with a segmenter that has every advantage the
16-shot one lacks: a small U-Net trained on thousands of labelled renders, half of each batch
replaced by the encoder's reconstructions so it also reads the generator's blurrier drawing.
It is then scored on held-out renders and on their embeddings (encoder + 100 steps by default),
beside the bundle's own segmenter on the same embeddings.

``python -m editgan.bench.ceiling [--model BUNDLE] [--steps 1500] [--faces 80] [--embed-steps 100 …]``
prints one JSON object. A diagnostic, not a product part: the U-Net is thrown away.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .. import toyfaces
from ..bundle import Bundle
from ..editor import Editor
from ..imageio import from_uint8
from ..models import default_bundle_path
from ..train.data import ToyFaceStream
from .model_quality import SEED_BASE, ClassIoU

TRAIN_SEED = 7_000_000  # seeds one RNG stream of faces, not params_for_seed: no scored face recurs in it


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class SegmentationUNet(nn.Module):
    """Three-level U-Net, RGB in [-1, 1] → class logits at the same size.

    Args:
        num_classes: output classes.
        width: channels at full resolution (doubled at each of the two lower levels; a multiple of 8).
    """

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.enc1, self.enc2, self.enc3 = _block(3, width), _block(width, 2 * width), _block(2 * width, 4 * width)
        self.dec2, self.dec1 = _block(6 * width, 2 * width), _block(3 * width, width)
        self.out = nn.Conv2d(width, num_classes, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.ndim == 4 and img.shape[1] == 3 and img.shape[2] % 4 == 0 and img.shape[3] % 4 == 0
        a = self.enc1(img)
        b = self.enc2(F.avg_pool2d(a, 2))
        c = self.enc3(F.avg_pool2d(b, 2))
        u = self.dec2(torch.cat([F.interpolate(c, scale_factor=2.0), b], 1))
        return self.out(self.dec1(torch.cat([F.interpolate(u, scale_factor=2.0), a], 1)))


def train_unet(bundle: Bundle, *, steps: int, batch: int = 32, seed: int = TRAIN_SEED,
               show_progress: bool = True) -> SegmentationUNet:
    """Fit a U-Net to fresh renders, half of each batch swapped for their encoder reconstructions."""
    torch.manual_seed(seed)
    g, r = bundle.generator.eval(), bundle.generator.resolution
    net = SegmentationUNet(len(bundle.classes))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    stream = ToyFaceStream(r, batch, seed=seed)
    for _ in tqdm(range(steps), desc="U-Net", disable=not show_progress):
        x, labels = stream.next_labelled_batch()
        if bundle.encoder is not None:
            half = batch // 2
            with torch.no_grad():
                x[half:] = g.synthesis(bundle.encoder(x[half:]))[0].clamp(-1, 1)
        loss = F.cross_entropy(net(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def run_ceiling(bundle: Bundle, *, steps: int = 1500, faces: int = 80, embed_steps=(100,),
                show_progress: bool = True) -> dict:
    """Per-class IoU against the render's labels of: the U-Net on the renders, and for each number
    of embedding steps the U-Net on the reconstructions and the bundle's segmenter on them."""
    net = train_unet(bundle, steps=steps, show_progress=show_progress)
    editor = Editor(bundle)
    names, r = editor.class_names, bundle.generator.resolution
    on_render = ClassIoU(len(names))
    on_recon = {n: ClassIoU(len(names)) for n in embed_steps}
    segmenter = {n: ClassIoU(len(names)) for n in embed_steps}
    for i in tqdm(range(faces), desc="held-out faces", disable=not show_progress):
        rgb, labels = toyfaces.render(toyfaces.params_for_seed(SEED_BASE + i), size=r)
        with torch.no_grad():
            on_render.add(net(from_uint8(rgb)).argmax(1)[0].numpy(), labels)
        for n in embed_steps:
            session = editor.embed(rgb, steps=n)
            with torch.no_grad():
                on_recon[n].add(net(from_uint8(session.reconstruction)).argmax(1)[0].numpy(), labels)
            if session.labels is not None:
                segmenter[n].add(session.labels, labels)
    return {"unet_steps": steps, "faces": faces, "seed_base": SEED_BASE,
            "unet_on_renders": on_render.result(names),
            "embeddings": [{"embed_steps": n, "unet_on_reconstructions": on_recon[n].result(names),
                            "bundle_segmenter": segmenter[n].result(names) if bundle.segmenter is not None else None}
                           for n in embed_steps]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m editgan.bench.ceiling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="bundle directory (default: the built-in demo model)")
    ap.add_argument("--steps", type=int, default=1500, help="U-Net training steps (batch 32)")
    ap.add_argument("--faces", type=int, default=80, help="held-out renders to score")
    ap.add_argument("--embed-steps", type=int, nargs="+", default=[100], help="embedding steps to compare")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.faces < 1 or min(args.embed_steps) < 0:
        ap.error("--steps and --faces must be ≥ 1, --embed-steps ≥ 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = Bundle.load(args.model or default_bundle_path())
    result = run_ceiling(bundle, steps=args.steps, faces=args.faces, embed_steps=tuple(args.embed_steps))
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
