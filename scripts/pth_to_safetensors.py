#!/usr/bin/env python3
"""Convert a legacy (pre-1.6, non-zip) PyTorch checkpoint into safetensors, without torch.

The legacy format is: magic pickle, protocol pickle, sys-info pickle, the state-dict pickle
(tensors refer to storages through persistent ids), a pickle listing the storage keys, then for
each key an 8-byte little-endian element count followed by the raw storage bytes.

Usage: pth_to_safetensors.py IN.pth OUT.safetensors
"""
import collections
import json
import pickle
import struct
import sys

MAGIC = 0x1950A86A20F9469CFC6C
DTYPES = {  # storage class -> (safetensors dtype, bytes per element)
    "FloatStorage": ("F32", 4),
    "LongStorage": ("I64", 8),
    "IntStorage": ("I32", 4),
    "HalfStorage": ("F16", 2),
    "DoubleStorage": ("F64", 8),
}


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def contiguous_strides(self):
        strides, acc = [], 1
        for dim in reversed(self.size):
            strides.append(acc)
            acc *= dim
        return tuple(reversed(strides))


def gather(storage, t, width):
    """The tensor's elements in row-major order, whatever its strides (some are channels-last)."""
    count = 1
    for d in t.size:
        count *= d
    if t.stride == t.contiguous_strides():
        data = storage[t.offset * width:(t.offset + count) * width]
    else:
        out = bytearray(count * width)
        index = [0] * len(t.size)
        for i in range(count):
            src = t.offset + sum(ix * st for ix, st in zip(index, t.stride))
            out[i * width:(i + 1) * width] = storage[src * width:(src + 1) * width]
            for dim in reversed(range(len(index))):
                index[dim] += 1
                if index[dim] < t.size[dim]:
                    break
                index[dim] = 0
        data = bytes(out)
    if len(data) != count * width:
        sys.exit("storage too short for tensor")
    return data


def rebuild_tensor(storage, offset, size, stride, *_rest):
    return Tensor(storage, offset, size, stride)


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return rebuild_tensor
        if module == "torch" and name in DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if pid[0] != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return {"kind": pid[1], "key": pid[2], "numel": pid[4]}


def main(src, dst):
    with open(src, "rb") as f:
        if Unpickler(f).load() != MAGIC:
            sys.exit(f"{src}: not a legacy torch checkpoint (bad magic)")
        Unpickler(f).load()  # protocol version
        Unpickler(f).load()  # sys info
        state = Unpickler(f).load()
        keys = Unpickler(f).load()
        kind_of = {}
        for t in state.values():
            if isinstance(t, Tensor):
                kind_of.setdefault(t.storage["key"], t.storage["kind"])
        storages = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            _, width = DTYPES[kind_of[key]]
            storages[key] = f.read(numel * width)
            if len(storages[key]) != numel * width:
                sys.exit(f"{src}: truncated storage {key}")
    header, blobs, offset = {}, [], 0
    for name, t in state.items():
        if not isinstance(t, Tensor):
            continue  # e.g. BatchNorm's num_batches_tracked would be a tensor; other entries are metadata
        dtype, width = DTYPES[t.storage["kind"]]
        data = gather(storages[t.storage["key"]], t, width)
        header[name] = {"dtype": dtype, "shape": list(t.size), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    meta = json.dumps(header, separators=(",", ":")).encode()
    meta += b" " * ((8 - len(meta) % 8) % 8)
    with open(dst, "wb") as out:
        out.write(struct.pack("<Q", len(meta)))
        out.write(meta)
        for b in blobs:
            out.write(b)
    print(f"{dst}: {len(header)} tensors, {offset} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
