"""The trained-parameter file (docs/format.md, "Trained-parameter file") as the
core writes it, against the layout built independently here with struct and
zlib; read in chunks of any size it gives the same bytes."""
import ctypes
import struct
import zlib

import pytest

import tinytrain
from tinytrain import _native
from tinytrain import modelfile as mf
from tinytrain.trainer import check_params_file, params_whole

import netzoo


@pytest.fixture(scope="module")
def trained():
    b, g, plan = netzoo.build("mbnet", "sparse", seed=3)
    xs, ys = netzoo.samples(b, g, 3, seed=4)
    t = tinytrain.Trainer(plan.data)
    for x, y in zip(xs, ys):
        t.step(x.tobytes(), y)
    return plan, t


def expected_file(plan, t) -> bytes:
    params = t.params()
    head = b"TTPS" + struct.pack("<HHIII", 1, 0, mf.Header.unpack(plan.data).crc32, t.info()["steps"],
                                 len(params))
    return head + params + struct.pack("<I", zlib.crc32(head + params))


def test_file_matches_the_documented_layout(trained, tmp_path):
    plan, t = trained
    want = expected_file(plan, t)
    assert bytes(t.params_file()) == want
    t.save(tmp_path / "p.ttp")
    assert (tmp_path / "p.ttp").read_bytes() == want


@pytest.mark.parametrize("chunk", [1, 3, 4, 7, 20, 21, 64, 1000])
def test_chunks_of_any_size_give_the_same_bytes(trained, chunk):
    plan, t = trained
    want = expected_file(plan, t)
    out = bytearray()
    buf = (ctypes.c_char * chunk)()
    while True:
        n = _native.lib.tt_params_file_read(t._tr, len(out), buf, chunk)
        if n == 0:
            break
        assert n == min(chunk, len(want) - len(out))
        out += buf.raw[:n]
    assert bytes(out) == want


def test_every_damage_is_caught(trained):
    plan, t = trained
    blob = expected_file(plan, t)
    crc, size = mf.Header.unpack(plan.data).crc32, len(t.params())
    assert params_whole(blob)
    assert check_params_file(blob, crc, size) == t.params()
    for i in range(0, len(blob), max(1, len(blob) // 97)):
        bad = bytearray(blob)
        bad[i] ^= 0x10
        assert not params_whole(bytes(bad))
        with pytest.raises(ValueError):
            check_params_file(bytes(bad), crc, size)
    for cut in (0, 4, 23, len(blob) - 1):
        assert not params_whole(blob[:cut])
    with pytest.raises(ValueError, match="another model"):
        check_params_file(blob, crc ^ 1, size)
    with pytest.raises(ValueError, match="this model trains"):
        check_params_file(blob, crc, size + 1)
