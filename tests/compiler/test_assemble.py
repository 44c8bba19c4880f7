import jax
import jax.numpy as jnp
import numpy as np

from rasp_compiler import lib
from rasp_compiler.compiler.assemble import assemble
from rasp_compiler.model.forward import build_forward, forward_numpy
from rasp_compiler.lang.graph import build_graph
from rasp_compiler.compiler.lower import lower_model
from rasp_compiler.compiler.rewrite import rewrite
from rasp_compiler.compiler.schedule import schedule
from rasp_compiler.compiler.values import infer_values


def test_parameters_match_what_the_haiku_forward_asks_for():
    program = lib.make_shuffle_dyck(["()", "{}"])
    graph = build_graph(program)
    ops = rewrite(graph, infer_values(graph, list("(){}"), 6))
    params, shape = assemble(lower_model(ops, schedule(ops)))
    forward = build_forward(shape, with_cache=True)
    ids = jnp.zeros((1, 3), jnp.int32)
    mask = jnp.ones((1, 3), bool)
    # Jitted: one XLA compile each instead of one per op (op-by-op dispatch is ~4x slower).
    expected = jax.jit(forward.init)(jax.random.PRNGKey(0), ids, mask)
    ours = jax.tree_util.tree_map(np.shape, params)
    theirs = jax.tree_util.tree_map(np.shape, expected)
    assert ours == theirs
    assert [layer.heads for layer in shape.layers] == [5, 0, 2]
    residual, cache = jax.jit(forward.apply)(params, None, ids, mask)
    assert residual.shape == (1, 3, shape.d_model)
    assert "blocks.2.attn.hook_pattern" in cache
    numpy_cache = {}
    numpy_residual = forward_numpy(params, shape, np.asarray(ids), np.asarray(mask), numpy_cache)
    np.testing.assert_allclose(numpy_residual, residual, atol=1e-5)
    assert set(numpy_cache) <= set(cache) and "blocks.1.hook_resid_mid" in numpy_cache
    for name, value in numpy_cache.items():
        np.testing.assert_allclose(value, cache[name], atol=1e-5, err_msg=name)


def test_forward_uses_highest_matmul_precision():
    import inspect

    from rasp_compiler.model import forward as module

    source = inspect.getsource(module.build_forward)
    assert source.count("jnp.einsum(") == source.count("precision=PRECISION")
    assert module.PRECISION == jax.lax.Precision.HIGHEST
