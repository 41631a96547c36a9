"""The Triton LIF kernels compile for real GPUs (sm_80, sm_90) with no GPU present.

Triton's interpreter (``tests/test_triton.py``) runs the kernels as Python and so accepts code the
compiler refuses (a non-constexpr global, an untyped branch merge, ...). ``triton.compile`` with an
explicit target needs no device: it lowers each specialisation through TTIR, TTGIR, LLVM and PTX to a
cubin with the ``ptxas`` bundled in the Triton wheel. This runs in a fresh process without
``TRITON_INTERPRET`` (this file is also the script it runs), over a seeded sample of the constexpr
combinations that covers both values of every flag and every surrogate, for float32 and bfloat16.
"""
from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _signatures(dtype: str, bits: bool):
    fwd = {"x_ptr": f"*{dtype}", "stride_xt": "i32", "u0_ptr": "*fp32", "par_ptr": "*fp32", "out_ptr": f"*{dtype}",
           "ulast_ptr": f"*{dtype}", "m_ptr": f"*{dtype}", "s_ptr": f"*{dtype}", "code_ptr": "*u8" if bits else f"*{dtype}",
           "stat_ptr": "*fp32", "T": "i32", "N": "i32", "n_blocks": "i32", "half_width": "fp32"}
    bwd = {"saved_ptr": "*u8" if bits else f"*{dtype}", "go_ptr": f"*{dtype}", "gl_ptr": f"*{dtype}", "u0_ptr": "*fp32",
           "par_ptr": "*fp32", "gx_ptr": f"*{dtype}", "gu0_ptr": "*fp32", "part_ptr": "*fp32", "T": "i32", "N": "i32",
           "last_row": "i64", "n_blocks": "i32", "sur_p": "fp32", "inv_gamma": "fp32"}
    return fwd, bwd


def compile_sample(n_each: int = 12) -> int:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import snn_lightning.neurons.kernels.triton_lif as TK

    assert not TK.INTERPRET, "this check needs the compiler, not the interpreter"
    rng = random.Random(0)
    fwd_space = list(itertools.product((0, 1), (0, 1), (0, 1), (0, 1), (0, 1), (0, 1), (0, 1), (0, 1, 2)))
    bwd_space = list(itertools.product((0, 1), (0, 1), (0, 1), (0, 1), (0, 1), (0, 1), range(4), (0, 1), (0, 1),
                                       (0, 1), (0, 1), (0, 1), (0, 1)))
    done = 0
    for arch, dtype in ((90, "fp32"), (90, "bf16"), (80, "fp16")):
        target = GPUTarget("cuda", arch, 32)
        opts = {"num_warps": 4, "enable_fp_fusion": False}
        for AS, HARD, SCALED, U0S, KEEP_M, WANT_S, BITS, STAT in rng.sample(fwd_space, n_each):
            consts = dict(AS=AS, HARD=HARD, SCALED=SCALED, U0_SCALAR=U0S, KEEP_M=KEEP_M, WANT_S=WANT_S, BITS=BITS,
                          BITS_PER_STEP=2 if HARD else 1, STAT=STAT, BLOCK=1024)
            triton.compile(ASTSource(TK.lif_fwd_kernel, _signatures(dtype, bool(BITS))[0], consts), target=target, options=opts)
            done += 1
        for AS, HARD, SCALED, DETACH, U0S, BITS, SUR, HGO, HGL, NX, NU0, NT, NV in rng.sample(bwd_space, n_each):
            bits = bool(BITS) and SUR == 0 and not NT and not NV  # what choose_storage allows
            consts = dict(AS=AS, HARD=HARD, SCALED=SCALED, DETACH=DETACH, U0_SCALAR=U0S, BITS=int(bits),
                          BITS_PER_STEP=2 if HARD else 1, SUR=SUR, HAS_GO=HGO, HAS_GL=HGL, NEED_X=NX, NEED_U0=NU0,
                          NEED_TAU=NT, NEED_V=NV, BLOCK=1024)
            triton.compile(ASTSource(TK.lif_bwd_kernel, _signatures(dtype, bits)[1], consts), target=target, options=opts)
            done += 1
    for SUR in range(4):  # every surrogate once more, with every gradient asked for
        consts = dict(AS=0, HARD=0, SCALED=1, DETACH=0, U0_SCALAR=1, BITS=0, BITS_PER_STEP=1, SUR=SUR, HAS_GO=1, HAS_GL=1,
                      NEED_X=1, NEED_U0=1, NEED_TAU=1, NEED_V=1, BLOCK=1024)
        triton.compile(ASTSource(TK.lif_bwd_kernel, _signatures("fp32", False)[1], consts),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "enable_fp_fusion": False})
        done += 1
    return done


@pytest.mark.slow
def test_triton_kernels_compile_for_sm80_and_sm90():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "compiled 76 kernels" in proc.stdout, proc.stdout


if __name__ == "__main__":
    print(f"compiled {compile_sample()} kernels")
