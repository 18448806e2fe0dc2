"""Writes the seed corpus for fuzz_request: the guide's request (json.dump indent=4 sort_keys, padded
standard base64) around each image of tests/fuzz/corpus_image/, the variants users paste (URL-safe,
unpadded, wrapped lines, several instances, extra keys) and one seed per refusal class. Plain python3:
`python3 tests/fuzz/make_corpus_request.py`."""
import base64
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus_request")


def guide(datas, **kw):
    """The request as the guide's script writes it."""
    return json.dumps({"instances": [{"data": d} for d in datas]}, indent=4, sort_keys=True, **kw).encode()


def main():
    os.makedirs(OUT, exist_ok=True)
    images = {}
    for name in sorted(os.listdir(os.path.join(HERE, "corpus_image"))):
        with open(os.path.join(HERE, "corpus_image", name), "rb") as f:
            images[name] = f.read()
    seeds = {}
    for name, b in images.items():
        seeds["guide_" + name.replace(".", "_") + ".json"] = guide([base64.b64encode(b).decode()])
    png = images["gray8.png"]
    std = base64.b64encode(png).decode()
    seeds["urlsafe.json"] = guide([base64.urlsafe_b64encode(png).decode()])
    seeds["unpadded.json"] = guide([std.rstrip("=")])
    seeds["wrapped.json"] = guide(["\n".join(std[i:i + 76] for i in range(0, len(std), 76))])
    seeds["multi.json"] = guide([std, base64.b64encode(images["gray.jpg"]).decode(), std])
    seeds["compact_extra_keys.json"] = json.dumps({"signature_name": "x", "instances": [{"data": std, "k": 1}]},
                                                  separators=(",", ":")).encode()
    seeds["bad_json.json"] = b'{"instances": [{"data": "iVBO'
    seeds["bad_no_instances.json"] = b'{"inputs": []}'
    seeds["bad_empty_instances.json"] = b'{"instances": []}'
    seeds["bad_instance_type.json"] = b'{"instances": [1, "x", null]}'
    seeds["bad_no_data.json"] = b'{"instances": [{"b64": "AAAA"}]}'
    seeds["bad_base64.json"] = b'{"instances": [{"data": "iVBO%w0KGgo="}]}'
    seeds["bad_padding.json"] = b'{"instances": [{"data": "iVBORw0KGg=="}]}'
    seeds["bad_not_image.json"] = guide([base64.b64encode(b"hello, world").decode()])
    seeds["bad_gif.json"] = guide(["R0lGODlhAQABAAAAACw="])
    seeds["bad_truncated_png.json"] = guide([base64.b64encode(png[:60]).decode()])
    seeds["bad_escapes.json"] = b'{"instances": [{"data": "\\u0041\\/\\n\\ud83d\\ude00"}]}'
    for name, body in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(body)


if __name__ == "__main__":
    main()
