"""onnx's own conformance tests against fastpoint's network runner (no network needed).

* The node test cases onnx generates in memory (``onnx.backend.test.case.node.collect_testcases()``) of
  every model made only of op types fastpoint registers: each passes with onnx's tolerances or raises
  NotImplementedError naming the op type and node (never a wrong answer); at least 90 % pass, Cast's
  exotic types and 3-d cases aside (the issue's target).
* The PyTorch-converted module tests shipped with onnx (``pytorch-converted``, ``pytorch-operator``):
  every one whose ops fastpoint supports passes, 3-d convolution/pooling aside.
* onnx's own runner (``onnx.backend.test.BackendTest``) drives :class:`FastpointBackend` on some of them.
"""

import glob
import os
import re
import unittest
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

import fastpoint as fp  # noqa: E402
from fastpoint.network import supported_ops  # noqa: E402
from fastpoint.network.backend import FastpointBackend  # noqa: E402

SUPPORTED = set(supported_ops())
DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
# outside the target (the issue): Cast to/from the float8/float4/int4/int2/bfloat16/string types, and 3-d cases
EXOTIC = re.compile(r"FLOAT8|FLOAT4|INT4|INT2|UINT4|UINT2|BFLOAT16|STRING|E4M3|E5M2|E8M0|FLOAT16", re.I)
THREE_D = re.compile(r"3d|_3d|3D")


def _array(v):
    return numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v)


def _ops(model):
    return {n.op_type for n in model.graph.node}


def run_case(model, data_sets, rtol, atol):
    """'pass', or raises: NotImplementedError (unsupported) or AssertionError (a wrong answer)."""
    rep = FastpointBackend.prepare(model)
    for inputs, outputs in data_sets:
        got = rep.run([_array(i) for i in inputs])
        assert len(got) == len(outputs)
        for g, e in zip(got, outputs):
            e = _array(e)
            assert g.dtype == e.dtype, f"dtype {g.dtype}, expected {e.dtype}"
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
    return "pass"


def outcome(model, data_sets, rtol, atol):
    try:
        return run_case(model, data_sets, rtol, atol), ""
    except NotImplementedError as e:
        return "unsupported", str(e)


_NODE_CASES = None
_OTHER_CASES = None  # the cases with an op type fastpoint does not register
_NODE_OUTCOMES = {}  # name -> (result, why): each case runs once per session


def node_outcome(case):
    if case.name not in _NODE_OUTCOMES:
        with np.errstate(all="ignore"):
            _NODE_OUTCOMES[case.name] = outcome(case.model, case.data_sets, case.rtol, case.atol)
    return _NODE_OUTCOMES[case.name]


def node_cases():
    global _NODE_CASES, _OTHER_CASES
    if _NODE_CASES is None:
        from onnx.backend.test.case import node

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cases = node.collect_testcases(None)
        _NODE_CASES = [c for c in cases if _ops(c.model) <= SUPPORTED]
        _OTHER_CASES = [c for c in cases if not _ops(c.model) <= SUPPORTED]
    return _NODE_CASES


def _node_case_names():
    try:
        return [c.name for c in node_cases()]
    except Exception:  # an onnx without the generators: the tests below say so
        return []


def _in_target(name: str) -> bool:
    return not (name.startswith("test_cast") and EXOTIC.search(name)) and not THREE_D.search(name)


@pytest.mark.parametrize("name", _node_case_names())
def test_node_case(name):
    case = next(c for c in node_cases() if c.name == name)
    result, why = node_outcome(case)
    if result == "unsupported":
        ops = _ops(case.model)
        assert any(op in why for op in ops) and "node" in why, why  # names the op type and the node
        pytest.skip(why)


def test_node_pass_rate_of_supported_ops():
    cases = [c for c in node_cases() if _in_target(c.name)]
    assert len(cases) > 500
    passed = 0
    for c in cases:
        try:
            passed += node_outcome(c)[0] == "pass"
        except AssertionError:  # a wrong answer: test_node_case reports it
            pass
    print(f"onnx node tests of the supported ops (Cast's exotic types and 3-d aside): {passed} of {len(cases)} pass")
    assert passed / len(cases) >= 0.90, f"{passed} of {len(cases)} node tests pass"


def test_unregistered_op_types_fail_at_load_naming_them():
    node_cases()
    assert len(_OTHER_CASES) > 100
    for case in _OTHER_CASES:
        missing = _ops(case.model) - SUPPORTED
        with pytest.raises(NotImplementedError) as info:
            FastpointBackend.prepare(case.model)
        assert any(repr(op) in str(info.value) for op in missing) or "domain" in str(info.value), (case.name,
                                                                                                 str(info.value))


def _pytorch_dirs():
    return sorted(glob.glob(os.path.join(DATA, "pytorch-converted", "*")) +
                  glob.glob(os.path.join(DATA, "pytorch-operator", "*")))


def _load_dir(path):
    model = onnx.load(os.path.join(path, "model.onnx"))
    data_sets = []
    for d in sorted(glob.glob(os.path.join(path, "test_data_set_*"))):
        ins = [onnx.load_tensor(f) for f in sorted(glob.glob(os.path.join(d, "input_*.pb")))]
        outs = [onnx.load_tensor(f) for f in sorted(glob.glob(os.path.join(d, "output_*.pb")))]
        data_sets.append((ins, outs))
    return model, data_sets


@pytest.mark.parametrize("path", _pytorch_dirs(), ids=lambda p: "/".join(p.split(os.sep)[-2:]))
def test_pytorch_converted(path):
    model, data_sets = _load_dir(path)
    missing = _ops(model) - SUPPORTED
    if missing:
        pytest.skip(f"ops fastpoint does not register: {sorted(missing)}")
    result, why = outcome(model, data_sets, 1e-3, 1e-7)
    if result == "unsupported":
        applicable = not THREE_D.search(path) and not ("ConvTranspose" in why and not hasattr(fp, "conv_transpose2d"))
        assert not applicable, why
        pytest.skip(why)


def test_onnx_backend_test_runner_drives_fastpoint_backend():
    """onnx's BackendTest machinery runs FastpointBackend (on the shipped PyTorch-converted models)."""
    import onnx.backend.test

    bt = onnx.backend.test.BackendTest(FastpointBackend, __name__)
    bt.include(r"(test_operator_(conv|clip|concat2|flatten|pad|permute2|view|selu|maxpool)|test_Conv2d|"
               r"test_BatchNorm2d_eval|test_ReLU|test_Softmax|test_PReLU_2d|test_MaxPool2d|test_AvgPool2d)_cpu$")
    suite = unittest.TestSuite()
    for cls in bt.test_cases.values():
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(cls))
    with open(os.devnull, "w") as devnull:
        result = unittest.TextTestRunner(verbosity=0, stream=devnull).run(suite)
    assert result.wasSuccessful(), [str(e[1])[-300:] for e in result.errors + result.failures]
    ran = result.testsRun - len(result.skipped)  # the others do not match the include pattern
    assert ran >= 15, ran
