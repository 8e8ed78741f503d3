"""Names for the files the lab holds itself, so that no server path is ever shown to a person.

- ``sample:<kind>`` (``sample:sft``, ``sample:preference``, ``sample:unpaired``, ``sample:prompts``): the bundled
  samples, one per data kind (the names ``lab.train.datasets`` and ``lab.catalog`` use for them too);
- ``upload:<digest>/<file name>``: a file uploaded through the web app, as kept by ``lab.data.uploads``
  (``LAB_HOME/uploads/<digest>/<file name>``). The digest tells two uploads of the same name apart.

``named_path`` turns a name into the file it stands for (anything else is not a name and is left to the
caller); ``source_name`` turns a file back into its name; ``shown`` is what a card's or a row's source reads
as on a page: a file's name, never its folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from lab.data.samples import SAMPLE_FILES
from lab.data.uploads import DIGEST_CHARS
from lab.errors import LabError
from lab.home import Home

SAMPLES = {f"sample:{kind}": Path(path) for kind, path in SAMPLE_FILES.items()}
UPLOAD = "upload:"
UPLOAD_NAME = re.compile(rf"upload:([0-9a-f]{{{DIGEST_CHARS}}})/([^/\\\0]+)\Z")


def named_path(text: str, home: Home) -> Path | None:
    """The file a sample's or an upload's name stands for; None when ``text`` is no such name (a path, a hub id)."""
    text = text.strip()
    if text in SAMPLES:
        return SAMPLES[text]
    if not text.startswith(UPLOAD):
        return None
    match = UPLOAD_NAME.match(text)
    if not match or match.group(2) in (".", ".."):
        raise LabError(f"'{text}' is not the name of an upload: uploads are named upload:<digest>/<file name>, "
                       "as the Data tab fills them in; upload the file again.")
    path = home.uploads / match.group(1) / match.group(2)
    if not path.is_file():
        raise LabError(f"The upload {match.group(2)} is no longer on this server (uploads nobody used for a week "
                       "are removed): upload the file again.")
    return path


def source_name(path: str | Path, home: Home) -> str:
    """A file as people may see and type it: a sample's or a kept upload's name, else the path as given."""
    resolved = Path(path).resolve()
    for name, sample in SAMPLES.items():
        if resolved == sample.resolve():
            return name
    uploads = home.uploads.resolve()
    if resolved.parent.parent == uploads:
        return f"{UPLOAD}{resolved.parent.name}/{resolved.name}"
    return str(path)


def shown(source: str | None) -> str:
    """What a page shows of a source: the file's name for a path or an upload, anything else (a sample's name,
    a hub id, ``campaign:<id>``) as it is."""
    text = str(source or "").strip()
    if text.startswith((UPLOAD, "/")):
        return Path(text).name or text
    return text
