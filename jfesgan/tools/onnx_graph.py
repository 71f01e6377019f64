"""A JAX function as an ONNX graph: its jaxpr, traced with a symbolic batch dimension, written op for
op in ONNX (opset 18), the weights as initializers, so that ONNX Runtime (or any ONNX consumer)
runs the very computation the Flax module defines, at any batch size.

Why not a converter package: ``jax2onnx`` pins an older orbax-checkpoint than the project's, and
the JAX -> TensorFlow -> ONNX route needs TensorFlow.  The networks of jfesgan use a few dozen
primitives (convolutions, transposed convolutions as input-dilated ones, dense layers, group
normalisation, FiLM, leaky ReLU, tanh, sigmoid, softmax), and the primitives are small and stable.
A primitive without a rule here is an error naming it, never a silent approximation.

Everything computable from the weights alone (a flipped kernel, a reshaped bias) is computed once,
here, and stored as a constant (constant folding).  Layout: JAX keeps NHWC; ONNX convolutions
take NCHW, so each convolution is wrapped in two transposes (ONNX Runtime's optimiser removes the
pairs that cancel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from jax import export as jax_export
from jax.extend import core as jex_core
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
BATCH = "batch"


class Unsupported(NotImplementedError):
  """A primitive (or a form of one) the converter has no ONNX rule for."""


class _Graph:
  """The ONNX graph under construction: nodes, initializers, and what each jaxpr variable is (an
  ONNX tensor name, or a numpy constant not yet written)."""

  def __init__(self, batch_dim):
    self.nodes: list[onnx.NodeProto] = []
    self.initializers: list[onnx.TensorProto] = []
    self.env: dict[Any, str | np.ndarray] = {}
    self.batch_dim = batch_dim
    self.batch_name: str | None = None  # the runtime batch size as a 1-D int64 tensor
    self._count = 0

  def name(self, hint: str) -> str:
    self._count += 1
    return f"{hint}_{self._count}"

  def const(self, value: np.ndarray, hint: str = "const") -> str:
    name = self.name(hint)
    self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
    return name

  def node(self, op: str, inputs: Sequence[str], n_out: int = 1, **attrs) -> list[str]:
    outs = [self.name(op.lower()) for _ in range(n_out)]
    self.nodes.append(helper.make_node(op, list(inputs), outs, **attrs))
    return outs

  def one(self, op: str, inputs: Sequence[str], **attrs) -> str:
    return self.node(op, inputs, **attrs)[0]

  def tensor(self, var) -> str:
    """The ONNX name of a jaxpr input (a literal or a constant becomes an initializer)."""
    if isinstance(var, jex_core.Literal):
      return self.const(np.asarray(var.val, dtype=var.aval.dtype), "literal")
    value = self.env[var]
    if isinstance(value, np.ndarray):
      name = self.const(value)
      self.env[var] = name
      return name
    return value

  def shape(self, dims) -> str:
    """A 1-D int64 shape tensor for ``dims``, where the symbolic batch dimension is read from the
    input at run time."""
    if all(isinstance(d, int) for d in dims):
      return self.const(np.asarray(dims, np.int64), "shape")
    parts = []
    for d in dims:
      if isinstance(d, int):
        parts.append(self.const(np.asarray([d], np.int64), "dim"))
      elif d == self.batch_dim:
        parts.append(self.batch_name)
      else:
        raise Unsupported(f"a shape with the dimension {d} (only the batch dimension may vary)")
    return self.one("Concat", parts, axis=0)


def _known(g: _Graph, var) -> np.ndarray | None:
  if isinstance(var, jex_core.Literal):
    return np.asarray(var.val, dtype=var.aval.dtype)
  value = g.env.get(var)
  return value if isinstance(value, np.ndarray) else None


def _value(g: _Graph, var) -> str | np.ndarray:
  """What ``var`` is, to pass into or out of an inlined call: its constant (kept foldable), or
  its tensor's name."""
  known = _known(g, var)
  return known if known is not None else g.tensor(var)


def _onnx_dtype(dtype) -> int:
  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _conv(g: _Graph, eqn, x: str, w: np.ndarray) -> str:
  p = eqn.params
  dn = p["dimension_numbers"]
  if p["feature_group_count"] != 1 or p["batch_group_count"] != 1:
    raise Unsupported("grouped convolutions")
  spatial = len(dn.lhs_spec) - 2
  x_nc = g.one("Transpose", [x], perm=list(dn.lhs_spec))
  kernel = np.transpose(w, dn.rhs_spec)  # (O, I, spatial...)
  lhs_dil, rhs_dil = tuple(p["lhs_dilation"]), tuple(p["rhs_dilation"])
  pads = [lo for lo, _ in p["padding"]] + [hi for _, hi in p["padding"]]
  if all(d == 1 for d in lhs_dil):
    y = g.one("Conv", [x_nc, g.const(kernel, "kernel")], strides=list(p["window_strides"]),
              dilations=list(rhs_dil), pads=pads)
  else:
    # An input-dilated convolution is a transposed convolution with the kernel unflipped:
    # stride = the input dilation, pads = k - 1 - the convolution's pads.
    if any(s != 1 for s in p["window_strides"]) or any(d != 1 for d in rhs_dil):
      raise Unsupported("input-dilated convolutions with strides or kernel dilation")
    k = kernel.shape[2:]
    t_pads = [k[i] - 1 - p["padding"][i][0] for i in range(spatial)] + [
        k[i] - 1 - p["padding"][i][1] for i in range(spatial)]
    if min(t_pads) < 0:
      raise Unsupported(f"a transposed convolution with padding {p['padding']} wider than its kernel")
    flipped = np.flip(kernel, axis=tuple(range(2, 2 + spatial)))
    w_t = np.ascontiguousarray(np.swapaxes(flipped, 0, 1))  # ConvTranspose: (I, O, spatial...)
    y = g.one("ConvTranspose", [x_nc, g.const(w_t, "kernel")], strides=list(lhs_dil), pads=t_pads)
  return g.one("Transpose", [y], perm=[int(i) for i in np.argsort(dn.out_spec)])


def _dot_general(g: _Graph, eqn, a: str, b: str) -> str:
  (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
  ra, rb = len(eqn.invars[0].aval.shape), len(eqn.invars[1].aval.shape)
  if not ba and not bb and tuple(ca) == (ra - 1,) and tuple(cb) == (0,) and rb == 2:
    return g.one("MatMul", [a, b])
  letters = iter("abcdefghijklmnopqrstuvwxyz")
  sa = [next(letters) for _ in range(ra)]
  sb = [None] * rb
  for i, j in zip(ba, bb):
    sb[j] = sa[i]
  for i, j in zip(ca, cb):
    sb[j] = sa[i]
  sb = [s or next(letters) for s in sb]
  out = ([sa[i] for i in ba] + [s for i, s in enumerate(sa) if i not in ca and i not in ba]
         + [s for j, s in enumerate(sb) if j not in cb and j not in bb])
  return g.one("Einsum", [a, b], equation=f"{''.join(sa)},{''.join(sb)}->{''.join(out)}")


_ELEMENTWISE = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min",
                "exp": "Exp", "log": "Log", "tanh": "Tanh", "logistic": "Sigmoid", "sqrt": "Sqrt",
                "neg": "Neg", "abs": "Abs", "gt": "Greater", "ge": "GreaterOrEqual", "lt": "Less",
                "le": "LessOrEqual", "eq": "Equal", "pow": "Pow", "erf": "Erf"}
_INLINE = ("custom_jvp_call", "custom_vjp_call", "jit", "pjit", "closed_call", "remat",
           "checkpoint")


def _emit(g: _Graph, jaxpr) -> None:
  """Writes the equations of ``jaxpr`` (its inputs already in ``g.env``)."""
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name in _INLINE:
      sub = eqn.params.get("call_jaxpr", eqn.params.get("jaxpr"))
      closed = sub if hasattr(sub, "consts") else None
      inner = sub.jaxpr if closed is not None else sub
      for var, const in zip(inner.constvars, closed.consts if closed is not None else ()):
        g.env[var] = np.asarray(const)
      for var, outer in zip(inner.invars, eqn.invars):
        g.env[var] = _value(g, outer)
      _emit(g, inner)
      for var, outer in zip(eqn.outvars, inner.outvars):
        g.env[var] = _value(g, outer)
      continue
    known = [_known(g, v) for v in eqn.invars]
    if all(k is not None for k in known):
      try:  # constant folding: computed here once, stored as a constant
        outs = eqn.primitive.bind(*known, **eqn.params)
        outs = outs if eqn.primitive.multiple_results else [outs]
        for var, val in zip(eqn.outvars, outs):
          g.env[var] = np.asarray(val)
        continue
      except Exception:  # noqa: BLE001 - e.g. a shape with the symbolic batch: emitted instead
        pass
    out = _rule(g, eqn, name, known)
    outs = out if isinstance(out, list) else [out]
    for var, o in zip(eqn.outvars, outs):
      g.env[var] = o


def _rule(g: _Graph, eqn, name: str, known) -> str | list[str]:
  ins = lambda: [g.tensor(v) for v in eqn.invars]  # noqa: E731
  p = eqn.params
  out_aval = eqn.outvars[0].aval
  if name in _ELEMENTWISE:
    return g.one(_ELEMENTWISE[name], ins())
  if name == "integer_pow":
    (x,) = ins()
    return g.one("Pow", [x, g.const(np.asarray(p["y"], out_aval.dtype))])
  if name == "square":
    (x,) = ins()
    return g.one("Mul", [x, x])
  if name == "rsqrt":
    return g.one("Reciprocal", [g.one("Sqrt", ins())])
  if name in ("stop_gradient", "copy", "copy_p", "optimization_barrier"):
    return ins()[0] if len(eqn.invars) == 1 else ins()
  if name == "convert_element_type":
    (x,) = ins()
    if eqn.invars[0].aval.dtype == out_aval.dtype:
      return g.one("Identity", [x])
    return g.one("Cast", [x], to=_onnx_dtype(out_aval.dtype))
  if name == "select_n":
    pred, *cases = ins()
    if len(cases) != 2:
      raise Unsupported("select_n with more than two cases")
    if eqn.invars[0].aval.dtype != np.bool_:
      pred = g.one("Cast", [pred], to=TensorProto.BOOL)
    return g.one("Where", [pred, cases[1], cases[0]])
  if name in ("reduce_sum", "reduce_max", "reduce_min"):
    (x,) = ins()
    op = {"reduce_sum": "ReduceSum", "reduce_max": "ReduceMax", "reduce_min": "ReduceMin"}[name]
    axes = g.const(np.asarray(p["axes"], np.int64), "axes")
    return g.one(op, [x, axes], keepdims=0)
  if name == "reshape":
    if p.get("dimensions") is not None:
      raise Unsupported("reshape with dimensions")
    return g.one("Reshape", [ins()[0], g.shape(p["new_sizes"])])
  if name in ("squeeze", "expand_dims"):
    return g.one("Reshape", [ins()[0], g.shape(out_aval.shape)])
  if name == "broadcast_in_dim":
    (x,) = ins()
    shape, dims = p["shape"], p["broadcast_dimensions"]
    in_shape = eqn.invars[0].aval.shape
    ranked = [1] * len(shape)
    for i, d in enumerate(dims):
      ranked[d] = in_shape[i]
    x = g.one("Reshape", [x, g.shape(ranked)])
    return g.one("Expand", [x, g.shape(shape)])
  if name == "transpose":
    return g.one("Transpose", ins(), perm=list(p["permutation"]))
  if name == "concatenate":
    return g.one("Concat", ins(), axis=int(p["dimension"]))
  if name == "pad":
    x, value = ins()
    config = p["padding_config"]
    if any(interior for _, _, interior in config) or any(lo < 0 or hi < 0 for lo, hi, _ in config):
      raise Unsupported(f"a pad with interior or negative padding {config}")
    pads = g.const(np.asarray([lo for lo, _, _ in config] + [hi for _, hi, _ in config], np.int64),
                   "pads")
    return g.one("Pad", [x, pads, value], mode="constant")
  if name == "split":
    (x,) = ins()
    sizes = g.const(np.asarray(p["sizes"], np.int64), "sizes")
    return g.node("Split", [x, sizes], n_out=len(p["sizes"]), axis=int(p["axis"]))
  if name == "dot_general":
    return _dot_general(g, eqn, *ins())
  if name == "conv_general_dilated":
    if known[1] is None:
      raise Unsupported("a convolution whose kernel is computed at run time")
    return _conv(g, eqn, g.tensor(eqn.invars[0]), known[1])
  if name == "slice":
    (x,) = ins()
    if p.get("strides") and any(st != 1 for st in p["strides"]):
      raise Unsupported("strided slices")
    # Only the axes the slice cuts: an axis taken whole may be the symbolic batch.
    shape = eqn.invars[0].aval.shape
    # (== on a symbolic dimension is True only where it is provably equal: batch == batch.)
    axes = [i for i, (lo, hi) in enumerate(zip(p["start_indices"], p["limit_indices"]))
            if not (lo == 0 and hi == shape[i])]
    if not axes:
      return g.one("Identity", [x])
    return g.one("Slice", [x, g.const(np.asarray([p["start_indices"][i] for i in axes], np.int64)),
                           g.const(np.asarray([p["limit_indices"][i] for i in axes], np.int64)),
                           g.const(np.asarray(axes, np.int64))])
  if name == "gather":
    # Only the form basic indexing takes (x[..., a:b] with a symbolic batch): a static slice.
    dn, idx = p["dimension_numbers"], known[1]
    rank = len(eqn.invars[0].aval.shape)
    if (idx is None or dn.collapsed_slice_dims or dn.operand_batching_dims
        or tuple(dn.offset_dims) != tuple(range(rank)) or idx.ndim != 1):
      raise Unsupported("a gather that is not a static slice")
    axes = list(dn.start_index_map)
    starts = [int(idx[i]) for i in range(len(axes))]
    ends = [starts[i] + int(p["slice_sizes"][a]) for i, a in enumerate(axes)]
    return g.one("Slice", [g.tensor(eqn.invars[0]), g.const(np.asarray(starts, np.int64)),
                           g.const(np.asarray(ends, np.int64)), g.const(np.asarray(axes, np.int64))])
  if name == "rev":
    raise Unsupported("rev of a tensor computed at run time")
  raise Unsupported(f"no ONNX rule for the JAX primitive {name!r}")


def to_onnx(fn: Callable, params: Any, inputs: dict[str, tuple[int, ...]], outputs: Sequence[str],
            doc: str = "") -> onnx.ModelProto:
  """``fn(params, *inputs)`` as an ONNX model: float32 inputs named and shaped by ``inputs``
  (each shape without its batch dimension, which is symbolic: ``batch``), outputs named
  ``outputs``, ``params`` (any pytree of arrays) stored as initializers or folded into
  constants."""
  clash = set(inputs) & set(outputs)
  if clash:
    raise ValueError(f"inputs and outputs must have different names: {sorted(clash)}")
  (batch,) = jax_export.symbolic_shape(BATCH)
  specs = [jax.ShapeDtypeStruct((batch, *shape), jnp.float32) for shape in inputs.values()]
  closed = jax.make_jaxpr(fn)(params, *specs)
  jaxpr = closed.jaxpr
  g = _Graph(batch)
  flat = jax.tree.leaves(params)
  n_params = len(flat)
  for var, const in zip(jaxpr.constvars, closed.consts):
    g.env[var] = np.asarray(const)
  for var, value in zip(jaxpr.invars[:n_params], flat):
    g.env[var] = np.asarray(value)
  graph_inputs = []
  for var, (name, shape) in zip(jaxpr.invars[n_params:], inputs.items()):
    g.env[var] = name
    graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape]))
  first = next(iter(inputs))
  g.batch_name = g.one("Slice", [g.one("Shape", [first]), g.const(np.asarray([0], np.int64)),
                                 g.const(np.asarray([1], np.int64))])
  _emit(g, jaxpr)
  graph_outputs = []
  for var, name in zip(jaxpr.outvars, outputs):
    g.nodes.append(helper.make_node("Identity", [g.tensor(var)], [name]))
    shape = [BATCH if not isinstance(d, int) else d for d in var.aval.shape]
    graph_outputs.append(helper.make_tensor_value_info(name, _onnx_dtype(var.aval.dtype), shape))
  graph = helper.make_graph(g.nodes, "jfesgan", graph_inputs, graph_outputs, g.initializers)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                            producer_name="jfesgan", doc_string=doc)
  model.ir_version = 8  # readable by ONNX Runtime releases back to 1.14
  onnx.checker.check_model(model)
  return model
