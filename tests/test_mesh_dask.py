"""neumat mesh --dask / evaluate_mesh(dask=...): a LocalCluster of 2 one-thread worker processes."""
from __future__ import annotations

import sys

import meshio
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from constitutive.cli import main  # noqa: E402
from constitutive.errors import NeumatInputError  # noqa: E402
from export.onnx_export import export_onnx  # noqa: E402
from fem_bridge import conventions as cv  # noqa: E402
from fem_bridge import dask_runner  # noqa: E402
from fem_bridge.backends import load_backend  # noqa: E402
from fem_bridge.mesh import FAILED, evaluate_mesh  # noqa: E402
from helpers import in_box_points, random_flownet  # noqa: E402

FLOW_ARGS = dict(temperature="T", strain_rate="rate", plastic_strain="peeq")


@pytest.fixture(scope="module")
def client():
    import logging
    import warnings
    warnings.filterwarnings("ignore", message="Port .* is already in use")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask_models")
    return export_onnx(random_flownet(3), d / "m.onnx"), export_onnx(random_flownet(4, n_extras=1), d / "mx.onnx")


def _cloud(n, seed=0, extra=False):
    net = random_flownet(0)
    x = in_box_points(net, n, seed=seed)
    x[::997, 2] = 1300.0                          # some points outside the box
    x[5, 1] = np.nan                              # and a non-finite one
    pd = {"peeq": x[:, 0], "rate": x[:, 1], "T": x[:, 2]}
    if extra:
        pd["dir"] = (np.arange(n) % 2).astype(float)
    pts = np.random.default_rng(seed).random((n, 3))
    return meshio.Mesh(pts, [("vertex", np.arange(n).reshape(-1, 1))], point_data=pd)


def _assert_same_fields(a, b):
    assert set(a.point_data) == set(b.point_data)
    for k in a.point_data:
        assert a.point_data[k].dtype == b.point_data[k].dtype, k
        np.testing.assert_array_equal(a.point_data[k], b.point_data[k], err_msg=k)   # bitwise (NaN == NaN)
    assert set(a.cell_data) == set(b.cell_data)
    for k in a.cell_data:
        for x, y in zip(a.cell_data[k], b.cell_data[k]):
            np.testing.assert_array_equal(x, y, err_msg=k)


def _install_failure(lo: int, hi: int) -> None:
    """On a worker: tasks whose rows overlap lo … hi-1 raise (stands for an onnxruntime error,
    an out-of-memory, …)."""
    import fem_bridge.dask_runner as dr
    orig = getattr(dr, "_orig_evaluate_rows", dr._evaluate_rows)
    dr._orig_evaluate_rows = orig

    def failing(flow, kernel, arrays, params, chunk, start):
        n = next(len(a) for a in arrays if a is not None)
        if start < hi and start + n > lo:
            raise MemoryError(f"injected failure at rows {start}…{start + n - 1}")
        return orig(flow, kernel, arrays, params, chunk, start)
    dr._evaluate_rows = failing


def _remove_failure() -> None:
    import fem_bridge.dask_runner as dr
    if hasattr(dr, "_orig_evaluate_rows"):
        dr._evaluate_rows = dr._orig_evaluate_rows


def test_flow_stress_and_update_bitwise_equal_to_single_process(client, models):
    n = 30_000
    r1, m1 = evaluate_mesh(models[1], _cloud(n, extra=True), extras={"extra0": "dir"}, chunk=1000, **FLOW_ARGS)
    r2, m2 = evaluate_mesh(models[1], _cloud(n, extra=True), extras={"extra0": "dir"}, chunk=1000,
                           dask=client, dask_task_rows=3500, **FLOW_ARGS)      # 4000-row tasks, 8 of them
    _assert_same_fields(m1, m2)
    assert r2.failures == [] and FAILED not in m2.point_data
    assert (r1.n_out_of_box, r1.n_nonfinite) == (r2.n_out_of_box, r2.n_nonfinite) and r2.n_nonfinite == 1
    assert r2.n_out_of_box > 0

    # update mode on (n_cells, n_qp) cell data, constant temperature
    from skfem import MeshHex
    from skfem.io.meshio import HEX_MAPPING
    h = MeshHex.init_tensor(*(np.linspace(0, 1, 6),) * 3)
    nc, nq = h.t.shape[1], 8
    de = 2e-3 * np.random.default_rng(2).normal(size=(nc, nq, 6))

    def hexes():
        return meshio.Mesh(h.p.T, [("hexahedron", h.t[HEX_MAPPING[:8]].T)], cell_data={"de": [de.copy()]})
    u1, h1 = evaluate_mesh(models[0], hexes(), temperature=1100.0, strain_increment="de", dt=0.05,
                           E=120000.0, nu=0.3, chunk=64)
    u2, h2 = evaluate_mesh(models[0], hexes(), temperature=1100.0, strain_increment="de", dt=0.05,
                           E=120000.0, nu=0.3, chunk=64, dask=client, dask_task_rows=200)
    _assert_same_fields(h1, h2)
    assert u1.status_counts == u2.status_counts and np.any(h2.cell_data["equivalent_plastic_strain"][0] > 0)


def test_model_shipped_once_and_one_session_per_worker(client, tmp_path, monkeypatch):
    model = export_onnx(random_flownet(11), tmp_path / "fresh.onnx")     # bytes no worker has seen yet
    key = dask_runner.model_key(load_backend(model).model_bytes)
    scatters, submits = [], []
    real_scatter, real_submit = client.scatter, client.submit

    def spy_scatter(data, *a, **kw):
        scatters.append((type(data[0]).__name__ if isinstance(data, list) else type(data).__name__,
                         kw.get("broadcast", False)))
        return real_scatter(data, *a, **kw)

    def spy_submit(fn, *args, **kw):
        submits.append(args)
        return real_submit(fn, *args, **kw)
    monkeypatch.setattr(client, "scatter", spy_scatter)
    monkeypatch.setattr(client, "submit", spy_submit)
    res, _ = evaluate_mesh(model, _cloud(20_000), chunk=500, dask=client, dask_task_rows=1500, **FLOW_ARGS)
    assert len(submits) == 14 and not res.failures
    assert scatters.count(("bytes", True)) == 1                         # the model: one broadcast
    assert [s for s in scatters if s != ("bytes", True)] == [("tuple", False)] * 14   # one per task's inputs
    for args in submits:                                                 # tasks carry a future, not the bytes
        assert not any(isinstance(a, (bytes, bytearray)) for a in args)
    builds = client.run(dask_runner.session_builds, key)
    assert set(builds.values()) <= {0, 1} and sum(builds.values()) >= 1, builds
    assert sum(builds.values()) == len(client.scheduler_info()["workers"]), builds   # both workers worked


def test_failing_chunk_reported_by_range_others_kept(client, models):
    n = 20_000
    _, ref = evaluate_mesh(models[0], _cloud(n), chunk=1000, **FLOW_ARGS)
    client.run(_install_failure, 8000, 8001)
    try:
        res, m = evaluate_mesh(models[0], _cloud(n), chunk=1000, dask=client, dask_task_rows=4000, **FLOW_ARGS)
    finally:
        client.run(_remove_failure)
    assert [(f.start, f.stop) for f in res.failures] == [(8000, 12000)]
    msg = res.failures[0].message("points")
    assert msg.startswith("points 8000–11999 failed on worker tcp://") and "MemoryError: injected failure" in msg
    bad = np.zeros(n, dtype=bool)
    bad[8000:12000] = True
    assert np.array_equal(m.point_data[FAILED], bad.astype(np.int32))
    assert np.isnan(m.point_data["flow_stress_MPa"][bad]).all()
    assert np.isnan(m.point_data["dflow_stress_d_temperature"][bad]).all()
    for k, v in ref.point_data.items():
        np.testing.assert_array_equal(m.point_data[k][~bad], v[~bad], err_msg=k)
    assert "1 chunk(s) FAILED, 4000 rows not evaluated" in res.summary()


def test_cli_with_a_scheduler_address_writes_output_and_exits_1_on_failure(client, models, tmp_path, capsys):
    n = 12_000
    src, out = tmp_path / "c.vtu", tmp_path / "o.vtu"
    meshio.write(src, _cloud(n))
    addr = client.scheduler.address
    argv = ["mesh", "--model", str(models[0]), "--in", str(src), "--out", str(out), "--temperature", "T",
            "--strain-rate", "rate", "--plastic-strain", "peeq", "--no-progress", "--chunk", "1000",
            "--dask", addr, "--dask-task-rows", "3000"]
    assert main(argv) == 0
    good = meshio.read(out)
    _, ref = evaluate_mesh(models[0], _cloud(n), chunk=1000, **FLOW_ARGS)
    np.testing.assert_array_equal(good.point_data["flow_stress_MPa"], ref.point_data["flow_stress_MPa"])
    capsys.readouterr()
    out.unlink()
    client.run(_install_failure, 3000, 3001)
    try:
        rc = main(argv)
    finally:
        client.run(_remove_failure)
    err = capsys.readouterr().err
    assert rc == 1
    assert "points 3000–5999 failed on worker tcp://" in err and "injected failure" in err
    assert "1 Dask task(s) failed; their 3000 rows are NaN" in err and "Traceback" not in err
    m = meshio.read(out)                                  # still written
    assert m.point_data[FAILED].sum() == 3000 and np.isnan(m.point_data["flow_stress_MPa"][3000:6000]).all()
    np.testing.assert_array_equal(m.point_data["flow_stress_MPa"][6000:], ref.point_data["flow_stress_MPa"][6000:])


def test_cli_local_cluster(models, tmp_path, capsys):
    src, out = tmp_path / "c.xdmf", tmp_path / "o.xdmf"
    meshio.write(src, _cloud(5000))
    assert main(["mesh", "--model", str(models[0]), "--in", str(src), "--out", str(out), "--temperature", "T",
                 "--strain-rate", "rate", "--plastic-strain", "peeq", "--no-progress", "--chunk", "700",
                 "--dask", "local:2", "--dask-task-rows", "1400"]) == 0
    assert "5000 evaluations" in capsys.readouterr().out
    _, ref = evaluate_mesh(models[0], _cloud(5000), chunk=700, **FLOW_ARGS)
    got = meshio.read(out)
    np.testing.assert_array_equal(got.point_data["flow_stress_MPa"], ref.point_data["flow_stress_MPa"])


def test_bad_dask_specs_and_missing_package(models, tmp_path, capsys, monkeypatch):
    src = tmp_path / "c.vtu"
    meshio.write(src, _cloud(10))
    base = ["mesh", "--model", str(models[0]), "--in", str(src), "--out", str(tmp_path / "o.vtu"),
            "--temperature", "T", "--strain-rate", "rate", "--plastic-strain", "peeq", "--no-progress"]
    for spec, want in [("local:0", "local:N takes a number of worker processes"),
                       ("local:two", "local:N takes a number"),
                       ("my-scheduler", "scheduler address like tcp://host:8786"),
                       ("http://h:8786", "scheduler address like tcp://host:8786"),
                       ("tcp://h:99999", "got 'tcp://h:99999'")]:
        assert main(base + ["--dask", spec]) == 2, spec
        err = capsys.readouterr().err
        assert want in err and "Traceback" not in err, (spec, err)
    assert dask_runner.parse_spec("local:3") == ("local", 3)
    assert dask_runner.parse_spec("10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    assert dask_runner.parse_spec("tls://sched.example:8786") == ("address", "tls://sched.example:8786")
    assert main(base + ["--dask", "local", "--backend", "compiled"]) == 2
    assert "onnxruntime backend only" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)            # as if not installed
    assert main(base + ["--dask", "local:2"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'neumat[dask]'" in err and "Traceback" not in err
    with pytest.raises(NeumatInputError, match="dask"):
        evaluate_mesh(models[0], _cloud(10), dask="local", **FLOW_ARGS)
    assert cv.NSTATV == 9                                              # (state layout the update test relies on)


def test_measured_conditions_reach_the_workers(client, tmp_path):
    """A model with recorded conditions: the workers get them with the model bytes and flag the
    same rows (the gap between 20 °C and 650 °C, strain beyond 0.4 at 20 °C) as the single process."""
    from helpers import gap_flownet
    path = export_onnx(gap_flownet(seed=6), tmp_path / "gap.onnx")
    n = 4000
    rng = np.random.default_rng(2)
    pd = {"peeq": rng.uniform(0.0, 0.6, n), "rate": 10 ** rng.uniform(-2, 0, n),
          "T": rng.choice([20.0, 335.0, 700.0, 1000.0], n)}
    mesh = lambda: meshio.Mesh(rng.random((n, 3)), [("vertex", np.arange(n).reshape(-1, 1))],
                               point_data={k: v.copy() for k, v in pd.items()})
    r1, m1 = evaluate_mesh(path, mesh(), chunk=500, **FLOW_ARGS)
    r2, m2 = evaluate_mesh(path, mesh(), chunk=500, dask=client, dask_task_rows=1000, **FLOW_ARGS)
    np.testing.assert_array_equal(m1.point_data["out_of_box"], m2.point_data["out_of_box"])
    expected = (pd["T"] == 335.0) | ((pd["T"] == 20.0) & (pd["peeq"] > 0.4))
    np.testing.assert_array_equal(m2.point_data["out_of_box"].astype(bool), expected)
    assert r1.n_out_of_box == r2.n_out_of_box == int(expected.sum())
