"""The LIF neuron's backends: the kernels that run all T steps of one layer (plain PyTorch + Triton).

One file per role:

* ``dispatch.py``: the backend names, the per-call choice, and ``LIFRun`` (what every backend returns);
* ``spec.py``: the static configuration of a kernel and what is saved for backward;
* ``function.py``: the autograd Function of the fused and compiled backends;
* ``eager.py``: their eager kernels (in-place PyTorch ops), with the maths of forward and backward;
* ``compiled.py``: the inductor-compiled kernels and ``CompileCache``, the one cache that holds them;
* ``triton_lif.py`` / ``triton_function.py``: the Triton kernels and their autograd Function
  (imported only when a neuron runs on Triton, so a machine without Triton never imports it).
"""
from .compiled import COMPILE_CACHE, CompileCache
from .dispatch import BACKENDS, LIFRun, resolve, run

__all__ = ["BACKENDS", "COMPILE_CACHE", "CompileCache", "LIFRun", "resolve", "run"]
