"""A source package from PyPI, checked against the index's SHA-256 and cached: how the test tools
that build reference implementations (tools/ggml_ref.py, tools/sdcpp_ref.py) get their sources."""
import hashlib
import json
import os
import urllib.parse
import urllib.request


def fetch(package, version, cache):
    """The path of `package`'s `version` sdist under `cache`, downloaded on first use."""
    index = f"https://pypi.org/pypi/{package}/json"
    meta = json.load(urllib.request.urlopen(index, timeout=60))
    files = meta.get("releases", {}).get(version) or (meta["urls"] if meta["info"]["version"] == version else [])
    (sdist,) = [u for u in files if u["packagetype"] == "sdist"]
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, sdist["filename"])
    if not os.path.exists(path):
        tmp = path + ".part"
        # Index mirrors may give the file's address relative to the index page.
        urllib.request.urlretrieve(urllib.parse.urljoin(index, sdist["url"]), tmp)
        os.replace(tmp, path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != sdist["digests"]["sha256"]:
        os.remove(path)
        raise SystemExit(f"{sdist['filename']}: SHA-256 {digest} does not match PyPI's")
    return path
