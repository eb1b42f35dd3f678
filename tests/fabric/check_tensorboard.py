#!/usr/bin/env python3
"""weft's TensorBoard event files read back by the tensorboard package.

usage: check_tensorboard.py TEST_LOGGERS_BINARY

The binary (--write-tb DIR) writes 20 steps of two scalars and three hyperparameters; this
script checks the framing CRCs itself, then reads every record with tensorboard's own
Event protobuf and its EventAccumulator, and checks every value, step, tag and the hparams
plugin data. Exit status 77 (skipped, for meson) when tensorboard cannot be imported.
"""
import glob
import os
import struct
import subprocess
import sys
import tempfile

try:
    from tensorboard.compat.proto import event_pb2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
except ImportError as e:  # pragma: no cover
    print(f"skipped: the tensorboard package is not installed ({e}); pip install tensorboard")
    sys.exit(77)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    tool = sys.argv[1]
    with tempfile.TemporaryDirectory() as root:
        logdir = subprocess.check_output([tool, "--write-tb", root], text=True).strip()
        files = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
        assert len(files) == 1, files
        raw = open(files[0], "rb").read()
        events, off = [], 0
        while off < len(raw):
            (n,) = struct.unpack_from("<Q", raw, off)
            (hc,) = struct.unpack_from("<I", raw, off + 8)
            assert hc == masked(crc32c(raw[off:off + 8])), "length crc"
            data = raw[off + 12:off + 12 + n]
            (dc,) = struct.unpack_from("<I", raw, off + 12 + n)
            assert dc == masked(crc32c(data)), "data crc"
            ev = event_pb2.Event()
            ev.ParseFromString(data)
            events.append(ev)
            off += 16 + n
        assert events[0].file_version == "brain.Event:2", events[0]
        scalars = [e for e in events if e.HasField("summary") and e.summary.value[0].HasField("simple_value")]
        want = {}
        for s in range(20):
            want[("train/loss", 10 * s)] = f32(1.0 / (s + 1))
            want[("train/acc", 10 * s)] = f32(0.05 * s)
        want[("hp_metric", 0)] = -1.0
        got = {(e.summary.value[0].tag, e.step): e.summary.value[0].simple_value for e in scalars}
        assert got == want, (got, want)
        for e in events:
            assert e.wall_time > 1.6e9, e.wall_time
        # hparams plugin data
        hp = {}
        for e in events:
            for v in e.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    d = plugin_data_pb2.HParamsPluginData()
                    d.ParseFromString(v.metadata.plugin_data.content)
                    hp[v.tag] = d
        assert set(hp) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}, hp
        ssi = hp["_hparams_/session_start_info"].session_start_info
        assert ssi.hparams["lr"].number_value == 0.001
        assert ssi.hparams["batch_size"].number_value == 64
        assert ssi.hparams["optimizer"].string_value == "adamw"
        exp = hp["_hparams_/experiment"].experiment
        assert [h.name for h in exp.hparam_infos] == ["lr", "batch_size", "optimizer"]
        assert [m.name.tag for m in exp.metric_infos] == ["hp_metric"]
        assert hp["_hparams_/session_end_info"].session_end_info.status == 1
        # tensorboard's own loader
        acc = EventAccumulator(logdir)
        acc.Reload()
        tags = acc.Tags()["scalars"]
        assert sorted(tags) == ["hp_metric", "train/acc", "train/loss"], tags
        for tag in ("train/loss", "train/acc"):
            evs = acc.Scalars(tag)
            assert [e.step for e in evs] == [10 * s for s in range(20)]
            for e in evs:
                assert e.value == want[(tag, e.step)], (tag, e.step, e.value)
    print("ok: %d records, %d scalars, hparams checked" % (len(events), len(scalars)))


if __name__ == "__main__":
    main()
