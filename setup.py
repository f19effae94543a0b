"""Build the native extensions (_chunker, _seal, _index, _scan, _treescan, _kdf, _restore, _gotime); everything else is declared in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "restique._chunker",
            sources=["src/restique/native/_chunker.c"],
            extra_compile_args=["-O3", "-std=c99"],
        ),
        Extension(
            "restique._seal",
            sources=["src/restique/native/_seal.c"],
            depends=["src/restique/native/aes256_ctr.h", "src/restique/native/sha256_pairs.h",
                     "src/restique/native/sha256_constants.h"],
            libraries=["crypto", "zstd"],
            extra_compile_args=["-O2", "-std=gnu99"],
        ),
        Extension(
            "restique._index",
            sources=["src/restique/native/_index.c", "src/restique/native/index_fields.c",
                     "src/restique/native/index_parser.c", "src/restique/native/index_packs.c",
                     "src/restique/native/index_prefixes.c"],
            depends=["src/restique/native/index.h"],
            extra_compile_args=["-O2", "-std=gnu99"],
        ),
        Extension(
            "restique._scan",
            sources=["src/restique/native/_scan.c"],
            extra_compile_args=["-O2", "-std=gnu99"],
        ),
        Extension(
            "restique._treescan",
            sources=["src/restique/native/_treescan.c"],
            extra_compile_args=["-O2", "-std=gnu99"],
        ),
        Extension(
            "restique._kdf",
            sources=["src/restique/native/_kdf.c"],
            depends=["src/restique/native/pbkdf2_sha256.h", "src/restique/native/sha256_constants.h"],
            extra_compile_args=["-O3", "-std=gnu99"],
        ),
        Extension(
            "restique._restore",
            sources=["src/restique/native/_restore.c"],
            extra_compile_args=["-O2", "-std=gnu99"],
        ),
        Extension(
            "restique._gotime",
            sources=["src/restique/native/_gotime.c"],
            extra_compile_args=["-O2", "-std=gnu99"],
        ),
    ]
)
