"""Images named by URI (s3://bucket/photo.jpg, gs://..., file:///...), read with pyarrow's file systems.

Any file system pyarrow reads serves images and their folders, with the credentials its own
configuration gives (for S3, the usual AWS environment and files); pyarrow is imported only for a URI.
"""

from __future__ import annotations

import re

from linearityiqa.errors import BadFileError, ConfigError, MissingFileError

# RFC 3986's scheme, then "://"; a Windows drive ("C:\\") has no "//" and one letter only
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(path: str) -> bool:
    """Whether `path` names a file by URI rather than by a local path."""
    return bool(_URI.match(path))


def _file_system(uri: str):
    """(file system, path inside it) of `uri`; ConfigError where pyarrow knows no such file system."""
    from pyarrow import fs  # a missing pyarrow is the scale extra's (cli/scripts.EXTRAS)

    try:
        return fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as error:  # ArrowInvalid is a ValueError; a missing bucket an OSError
        raise ConfigError(f"cannot reach {uri} ({error}): check the URI and the file system's credentials") from None


def read_bytes(uri: str) -> bytes:
    """The whole file `uri` names; MissingFileError or BadFileError naming it."""
    system, path = _file_system(uri)
    try:
        with system.open_input_file(path) as file:
            return file.read()
    except FileNotFoundError:
        raise MissingFileError(f"image {uri} does not exist") from None
    except (OSError, ValueError) as error:
        raise BadFileError(f"cannot read image {uri} ({error}): check that it is a file this user may read") from None


def is_folder(uri: str) -> bool:
    """Whether `uri` names a folder (a prefix, on an object store) that holds files."""
    from pyarrow import fs

    system, path = _file_system(uri)
    return system.get_file_info(path).type == fs.FileType.Directory


def folder_files(uri: str) -> list[str]:
    """The URIs of the files directly in the folder `uri` names (not its subfolders), sorted."""
    from pyarrow import fs

    system, path = _file_system(uri)
    scheme, _, _ = uri.partition("://")
    infos = system.get_file_info(fs.FileSelector(path.rstrip("/"), recursive=False))
    # A local file system gives absolute paths, an object store bucket/key: both follow the scheme's "://".
    return sorted(f"{scheme}://{info.path}" for info in infos if info.type == fs.FileType.File)
