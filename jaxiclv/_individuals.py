"""The individual axis: how a per-individual function is mapped over individuals, how many
individuals go in one block, and how individuals are laid out over devices.

Every per-individual computation (the log-likelihood, its gradient, the scores, every Hessian,
the post-estimation functions) goes through :func:`for_each_individual` (stacked results) or
:func:`accumulate_over_chunks` (sums and stacked rows), under a :class:`Blocks` layout:
``size`` individuals at a time (``None``: all at once, ``vmap``) on each device of ``mesh``
(``None``: no mesh, the arrays where they are: one device). With a mesh, individuals are
sharded over its one axis ``"individuals"`` (``jax.shard_map``; the parameters, passed explicitly, replicated):
each device maps its own individuals in blocks, stacked results stay sharded, and sums are
reduced across devices (``psum``; a weighted sum of sharded rows, as the log-likelihood's
``sum_i w_i LL_i``, is reduced by XLA). :func:`place_individuals` pads the individuals to a
multiple of the number of devices with copies of the first individual of sampling weight 0
(they add nothing to any weighted sum; callers drop their rows) and shards them.
:class:`~jaxiclv.Problem` uses a mesh when it has more than one device (on one, arrays placed
on a one-device mesh measured slower, :func:`place_individuals`); the functions mapped are the
same either way.

Block size (``chunk_size="auto"``, :func:`auto_chunk_size`): a block of ``n`` individuals with
``R`` draws holds about ``n R W`` per-draw values, ``W = T J + K + D`` (utilities of the
``T x J`` tasks and alternatives, ``K`` indicator terms, ``D`` draw dimensions), and about
``n R W m`` when ``m`` tangent directions or perturbed points go through at once (Hessians).
The block is as large as keeps ``n R W`` within a working-set budget (the Hessians' blocks
``1 / m`` of it): ``2^18`` values (2 MB in float64) on CPU, where the per-draw arrays then stay
in cache; ``2^25`` (256 MB) on an accelerator, which wants large blocks and has the memory for
them. Measured on 2 CPU cores at the reference size (328 individuals, ``W = 49``; the budget
gives 53, 10 and 2 individuals at R = 100, 500 and 2,000), the analytic gradient took
41.9 / 42.3 / 44.0 / 44.0 ms in blocks of 20 / 40 / 53 / 80 individuals at R = 100,
201 / 171 / 180 ms in blocks of 5 / 10 / 20 at R = 500, and 624 / 632 / 647 / 747 / 767 ms in
blocks of 1 / 2 / 4 / 10 / 40 at R = 2,000 (a fixed 40 was 18 % slower there); the jacfwd
Hessian 1.2 s with 32 directions over blocks of 1 individual against 2.7 s over blocks of 40.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float

from ._draws import OnTheFly

__all__ = ["Blocks", "INDIVIDUALS", "individual_mesh", "place_individuals", "gather_individuals",
           "for_each_individual",
           "map_individuals", "accumulate_over_chunks", "auto_chunk_size", "resolve_chunk_size",
           "chunk_size_for_directions", "per_draw_width", "WORKING_SET"]

# per-draw values a block may hold, by backend kind
WORKING_SET = {"cpu": 2 ** 18, "accelerator": 2 ** 25}

INDIVIDUALS = "individuals"  # the mesh axis the individuals are sharded over
_SHARDED = PartitionSpec(INDIVIDUALS)


class Blocks(NamedTuple):
    """The layout of the individual axis (hashable: a static argument of the jitted
    functions): ``size`` individuals per block on each device (``None``: all of them at
    once) and the ``mesh`` the individuals are sharded over (``None``: none)."""

    size: int | None = None
    mesh: Mesh | None = None


def _as_blocks(chunk_size: int | None | Blocks) -> Blocks:
    return chunk_size if isinstance(chunk_size, Blocks) else Blocks(chunk_size)


def individual_mesh(devices: int | Sequence | None = None) -> Mesh:
    """A one-axis mesh ``"individuals"`` over ``devices``: ``None``, every device JAX sees
    (every process's under ``jax.distributed``); an integer ``k``, the first ``k`` of this
    process's devices (``1``: no sharding); or the devices themselves."""
    if devices is None:
        chosen = jax.devices()
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        local = jax.local_devices()
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices={devices}: this process has {len(local)} device(s) "
                             f"({local[0].platform})")
        chosen = local[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices is empty: give None (every device), a count or devices")
    return Mesh(np.array(chosen), (INDIVIDUALS,))


def place_individuals(data, draws, mesh: Mesh):
    """``(data, draws)`` padded to a multiple of ``mesh.size`` individuals with copies of the
    first individual of sampling weight 0, and sharded over ``mesh`` (each process supplies
    its own devices' rows: ``jax.make_array_from_callback``, so under ``jax.distributed``
    every process passes the whole panel and holds only its devices' individuals); the
    source of :class:`~jaxiclv._draws.OnTheFly` draws is replicated. A mesh of
    one device: the arrays on that device, not committed to the mesh (use no mesh in the
    layout). Timings on this project's 2-core machine are bimodal across processes (the
    structured Hessian at the reference size 0.42-0.47 s or 0.72-0.80 s, whatever the code);
    with the arrays on a one-device mesh 5 processes of 5 were slow, without it 1 of 5."""
    if mesh.size == 1:
        return jax.device_put((data, draws), mesh.devices.flat[0])
    n = draws.shape[0]
    extra = -n % mesh.size
    rows, shared, _ = _individual_axis(draws)

    def pad(a):  # (N, ...) -> (N + extra, ...): copies of the first individual
        a = np.asarray(a)
        return np.concatenate([a, np.broadcast_to(a[:1], (extra, *a.shape[1:]))])

    def place(a, spec=_SHARDED):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, NamedSharding(mesh, spec),
                                            lambda index: a[index])

    if extra:
        data, rows = jax.tree.map(pad, (data, rows))
        weights = data.weights.copy()
        weights[n:] = 0.0
        data = eqx.tree_at(lambda d: d.weights, data, weights)
    data, rows = jax.tree.map(place, (data, rows))
    if shared is None:
        return data, rows
    return data, OnTheFly(jax.tree.map(lambda a: place(a, PartitionSpec()), shared), rows,
                          draws.dtype)


def gather_individuals(rows, n_individuals: int):
    """The first ``n_individuals`` rows (the panel's, without the padding) of per-individual
    results sharded like the individuals, readable on this process: under ``jax.distributed``
    the other processes' rows are gathered (``process_allgather``, every process calls it)."""
    def gather(a):
        if not a.is_fully_addressable:
            a = multihost_utils.process_allgather(a, tiled=True)
        return a[:n_individuals]

    return jax.tree.map(gather, rows)


def _full_precision(f):
    def traced_in_full_precision(*args):
        with jax.default_matmul_precision("highest"):  # read when each product is traced
            return f(*args)
    return traced_in_full_precision


def _over_devices(local, mesh: Mesh | None, summed: bool, params, *args):
    """``local(params, *args)`` on each device's individuals of ``mesh`` (the leading axis of
    every leaf of ``args``; ``params`` replicated), its output stacked back over the devices,
    sharded like the individuals; with ``summed``, ``local`` returns ``(sums, rows)`` and the
    sums are added across devices (``psum``). ``mesh=None``: ``local(params, *args)``
    itself. Whatever depends on the parameters goes in ``params``: a traced value closed
    over, committed to the mesh, cannot enter ``shard_map``'s per-device computation.

    The matrix products traced in ``local`` are in full precision (``"highest"``): on recent
    GPUs JAX's default for float32 is TensorFloat-32 (10-bit mantissas), on TPUs bfloat16;
    float64 products are unaffected."""
    local = _full_precision(local)
    if mesh is None:
        return local(params, *args)
    n = jax.tree.leaves(args)[0].shape[0]
    if n % mesh.size:
        raise ValueError(f"{n} individuals cannot be sharded evenly over {mesh.size} devices: "
                         f"place them with place_individuals (pads them)")

    def on_device(params, *args):
        out = local(params, *args)
        return (jax.lax.psum(out[0], INDIVIDUALS), out[1]) if summed else out

    return jax.shard_map(on_device, mesh=mesh,
                         in_specs=(PartitionSpec(), *[_SHARDED] * len(args)),
                         out_specs=(PartitionSpec(), _SHARDED) if summed else _SHARDED,
                         check_vma=False)(params, *args)


def per_draw_width(data, n_draw_dims: int) -> int:
    """``W = T J + K + D``: an individual's per-draw values (utilities of its tasks and
    alternatives, indicator terms, draw dimensions)."""
    n_tasks, n_alternatives = data.available.shape[1:3]
    return n_tasks * n_alternatives + data.indicators.shape[1] + n_draw_dims


def auto_chunk_size(n_individuals: int, n_draws: int, width: int,
                    backend: str | None = None) -> int:
    """Individuals per block so that ``block R W`` per-draw values fit the backend's
    :data:`WORKING_SET`: at least 1, at most every individual (one block). A block with ``m``
    directions in flight is then :func:`chunk_size_for_directions` of it."""
    kind = "cpu" if (backend or jax.default_backend()) == "cpu" else "accelerator"
    block = WORKING_SET[kind] // (max(1, n_draws) * max(1, width))
    return int(min(max(1, block), n_individuals))


def resolve_chunk_size(chunk_size, n_individuals: int, n_draws: int, width: int) -> int | None:
    """``"auto"``: :func:`auto_chunk_size` (``n_individuals``: those of one device); a positive
    integer or ``None`` (one pass) as given."""
    if isinstance(chunk_size, str) and chunk_size == "auto":
        return auto_chunk_size(n_individuals, n_draws, width)
    if chunk_size is not None and (isinstance(chunk_size, str) or int(chunk_size) != chunk_size
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, None or 'auto', got {chunk_size!r}")
    return chunk_size


def chunk_size_for_directions(chunk_size: int | None | Blocks, directions: int) -> Blocks:
    """The layout when ``directions`` tangent directions (or perturbed points) go through at
    once (pass the number actually in flight): blocks of ``size // directions`` individuals,
    at least 1, the same working set as a gradient block, on the same devices; ``None`` (one
    pass) stays ``None``."""
    blocks = _as_blocks(chunk_size)
    return blocks._replace(size=None if blocks.size is None else max(1, blocks.size // directions))


def map_individuals(f, xs, chunk_size: int):
    """``jax.lax.map(f, xs, batch_size=chunk_size)``, checkpointed (reverse-mode
    differentiation keeps one chunk's intermediates, not all), and tolerant of zero-size
    output leaves (an LV without covariates has a ``(L, 0)`` gradient), on which ``lax.map``'s
    batching divides by zero."""
    n = jax.tree.leaves(xs)[0].shape[0]
    shapes, treedef = jax.tree.flatten(jax.eval_shape(f, jax.tree.map(lambda a: a[0], xs)))
    keep = [shape.size > 0 for shape in shapes]
    kept = jax.checkpoint(lambda x: [v for v, k in zip(jax.tree.leaves(f(x)), keep) if k])
    mapped = iter(jax.lax.map(kept, xs, batch_size=chunk_size))
    return jax.tree.unflatten(treedef, [next(mapped) if k else jnp.zeros((n, *s.shape), s.dtype)
                                        for s, k in zip(shapes, keep)])


def _individual_axis(draws):
    """``(rows, shared, draws_of)``: what of ``draws`` lies along the individual axis (an
    ``(N, R, D)`` array; the indices of :class:`~jaxiclv._draws.OnTheFly` draws), what every
    individual shares (``None``; the draws' source), and ``draws_of(shared, rows_b)``, the
    ``(R, D)`` or ``(n, R, D)`` draws of one row or a block of rows (made there, on the fly)."""
    if isinstance(draws, OnTheFly):
        return (draws.individuals, draws.source,
                lambda source, rows: OnTheFly(source, rows, draws.dtype).of(rows))
    return draws, None, lambda shared, rows: rows


def for_each_individual(f, params, data, draws: Float[Array, "N R D"] | OnTheFly,
                        chunk_size: int | None | Blocks):
    """``f(params, x_i, eta_i)`` of every individual, stacked on a leading axis ``N``
    (sharded like the individuals): all at once (``vmap``) or over blocks of individuals, on
    each device of the layout (``chunk_size``: individuals per block, ``None`` or a
    :class:`Blocks`). ``params`` (a pytree: the model, the parameter vector) is what every
    individual shares; ``eta_i`` the individual's ``(R, D)`` draws (made in the block for
    :class:`~jaxiclv._draws.OnTheFly` draws)."""
    blocks = _as_blocks(chunk_size)
    rows, shared, draws_of = _individual_axis(draws)

    def local(params_shared, data, rows):
        params, shared = params_shared
        one = lambda x, row: f(params, x, draws_of(shared, row))
        if blocks.size is None:
            return jax.vmap(one)(data, rows)
        return map_individuals(lambda xr: one(*xr), (data, rows), blocks.size)

    return _over_devices(local, blocks.mesh, False, (params, shared), data, rows)


def _accumulate(f, xs, chunk_size: int | None):
    n = jax.tree.leaves(xs)[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return f(xs)
    n_blocks = n // chunk_size
    n_full = n_blocks * chunk_size
    blocks = jax.tree.map(lambda a: a[:n_full].reshape(n_blocks, chunk_size, *a.shape[1:]), xs)
    sums_shape, _ = jax.eval_shape(f, jax.tree.map(lambda a: a[0], blocks))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), sums_shape)

    def add(total, block):
        sums, rows = f(block)
        return jax.tree.map(jnp.add, total, sums), rows

    total, rows = jax.lax.scan(add, zeros, blocks)
    rows = jax.tree.map(lambda a: a.reshape(n_full, *a.shape[2:]), rows)
    if n_full == n:
        return total, rows
    rest_sums, rest_rows = f(jax.tree.map(lambda a: a[n_full:], xs))
    return (jax.tree.map(jnp.add, total, rest_sums),
            jax.tree.map(lambda a, b: jnp.concatenate([a, b]), rows, rest_rows))


def accumulate_over_chunks(f, params, data, draws: Float[Array, "N R D"] | OnTheFly,
                           chunk_size: int | None | Blocks):
    """``(sum_b sums_b, rows)`` where ``f(params, data_b, draws_b) = (sums_b, rows_b)`` for
    blocks of individuals (``draws_b``: their ``(n, R, D)`` draws, made in the block for
    :class:`~jaxiclv._draws.OnTheFly` draws) under the layout ``chunk_size``: on each device
    the sums are accumulated with ``jax.lax.scan`` (memory of one block, however many
    individuals), then summed across devices (``psum``); the rows (leading axis the block's
    individuals) are stacked back to ``N``, sharded like the individuals."""
    blocks = _as_blocks(chunk_size)
    rows, shared, draws_of = _individual_axis(draws)

    def local(params_shared, data, rows):
        params, shared = params_shared
        block_f = lambda block: f(params, block[0], draws_of(shared, block[1]))
        return _accumulate(block_f, (data, rows), blocks.size)

    return _over_devices(local, blocks.mesh, True, (params, shared), data, rows)
