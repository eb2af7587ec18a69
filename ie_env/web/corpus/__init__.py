"""The offline web's image corpus: built once per source ("site") into the cache dir, loaded fast.

Layout under ``cache_subdir('web')``::

    parts/<source>-<key>/                                one built source (see :mod:`.build`)
    arrays/<corpus>-<key>-<size>-<preprocess>.npy        every image decoded for training (see :mod:`.arrays`)

Modules: :mod:`~ie_env.web.corpus.build` (a source into a part), :mod:`~ie_env.web.corpus.process` (one
item into a stored PNG), :mod:`~ie_env.web.corpus.reader` (:class:`Corpus`, the parts' rows together),
:mod:`~ie_env.web.corpus.arrays` (training arrays and hashes, by the downloader's preprocessing) and
:mod:`~ie_env.web.corpus.presets` (named corpora and :func:`open_corpus`).
"""

from ie_env.web.corpus.build import BUILD_VERSION, BuildConfig, build_part, part_dir, part_key
from ie_env.web.corpus.presets import CORPUS_PRESETS, corpus_sources, make_source, open_corpus
from ie_env.web.corpus.process import process_payload, to_rgb_on_white
from ie_env.web.corpus.reader import Corpus, CorpusImage

__all__ = [
    "BUILD_VERSION",
    "CORPUS_PRESETS",
    "BuildConfig",
    "Corpus",
    "CorpusImage",
    "build_part",
    "corpus_sources",
    "make_source",
    "open_corpus",
    "part_dir",
    "part_key",
    "process_payload",
    "to_rgb_on_white",
]
