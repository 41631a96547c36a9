"""`snn-export ckpt_path=... format=nir|torchscript out=...`: the deployable network of a saved run.

Both formats hold the binary inference network: ``fold_thresholds(fuse_conv_norm(net))`` — 0/1
spikes, V_thr folded into the consumers, every tdBN/BN inside its convolution (README "Export").

* ``format=nir`` writes ``snn_lightning.export.to_nir(net)`` with ``nir.write`` (HDF5), reads it back
  and prints the largest logit difference between the file (run by ``from_nir``) and the network.
* ``format=torchscript`` writes ``snn_lightning.export.to_torchscript(net)``: a trace of the deployed
  network on static images of the run's input size (any batch size), loadable by libtorch.

Arguments are ``key=value`` like snn-eval's: ``ckpt_path`` (required), ``format`` (default nir),
``out`` (default: next to the checkpoint, ``<name>.nir`` / ``<name>.pt``), ``overwrite`` (default
false: an existing file is never replaced unless asked).
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

from ..errors import UserError
from ._common import guarded

FORMATS = {"nir": ".nir", "torchscript": ".pt"}
KEYS = ("ckpt_path", "format", "out", "overwrite")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_args(argv: list[str]) -> dict[str, str]:
    """``key=value`` tokens as a dict; UserError for a token without ``=``, an unknown key or a missing one."""
    args = {"format": "nir", "overwrite": "false"}
    for token in argv:
        key, sep, value = token.partition("=")
        if not sep:
            raise UserError(f"expected key=value, got {token!r}; keys: {', '.join(KEYS)}")
        if key not in KEYS:
            raise UserError(f"unknown key {key!r}; allowed: {', '.join(KEYS)}")
        args[key] = value
    if not args.get("ckpt_path"):
        raise UserError("ckpt_path=... is required (a checkpoint written by snn-train)")
    if args["format"] not in FORMATS:
        raise UserError(f"unknown format {args['format']!r}; allowed: {', '.join(FORMATS)}")
    if args["overwrite"].lower() not in _TRUE + _FALSE:
        raise UserError(f"overwrite must be true or false, got {args['overwrite']!r}")
    return args


def output_path(args: dict[str, str]) -> Path:
    out = Path(args["out"]) if args.get("out") else Path(args["ckpt_path"]).with_suffix(FORMATS[args["format"]])
    if out.exists() and args["overwrite"].lower() not in _TRUE:
        raise UserError(f"{out} exists; pass overwrite=true to replace it")
    if out.is_dir():
        raise UserError(f"out={out} is a directory; give a file name")
    return out


def _write_atomically(out: Path, write) -> None:
    """``write(tmp_path)`` then rename: a failed export never leaves a half-written ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the export from the user's group
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export(args: dict[str, str]) -> Path:
    import torch

    from .. import experiment as ex
    # the submodules, by name: `snn_lightning.export` itself reads as an entry-point shim to tests/test_layering.py
    from ..export.nir_graph import to_nir
    from ..export.nir_runtime import from_nir
    from ..export.torchscript import to_torchscript

    out = output_path(args)
    trained = ex.load_trained(args["ckpt_path"])
    net = trained.net.eval()
    size = getattr(net, "input_size", None) or getattr(trained.datamodule, "input_size", None)
    p = next(net.parameters())
    x = torch.rand(2, net.in_channels, int(size), int(size), dtype=p.dtype, device=p.device)
    with torch.no_grad():
        ref = net(x)
    if args["format"] == "nir":
        import nir

        graph = to_nir(net, input_size=int(size))
        _write_atomically(out, lambda path: nir.write(path, graph))
        with torch.no_grad():
            gap = (from_nir(out)(x) - ref).abs().max().item()
        print(f"wrote NIR graph ({len(graph.nodes)} nodes, {len(graph.edges)} edges, T={net.T}) to {out}")
    else:
        traced = to_torchscript(net, input_size=int(size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save/load are deprecated upstream
            _write_atomically(out, lambda path: torch.jit.save(traced, path))
            with torch.no_grad():
                gap = (torch.jit.load(str(out))(x) - ref).abs().max().item()
        print(f"wrote TorchScript ({type(net).__name__}, static input [B, {net.in_channels}, {size}, {size}], T={net.T}) to {out}")
    print(f"max |logit difference| of the written file vs the checkpoint's network on a random batch: {gap:.3g}")
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.replace("`", ""))
        print("example: snn-export ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt format=nir")
        return
    guarded(lambda: export(parse_args(argv)))


if __name__ == "__main__":
    main()
