"""The offline web: real images from Debian packages as several "sites", searched over HTTP on loopback.

:mod:`~ie_env.web.sources` lists each site's images, :mod:`~ie_env.web.corpus` builds and reads them,
:mod:`~ie_env.web.index` is the one caption ranking, :mod:`~ie_env.web.embedder` embeds queries,
:mod:`~ie_env.web.app` and :mod:`~ie_env.web.server` answer the Openverse images API,
:mod:`~ie_env.web.targets` holds target sets out of the index, and :mod:`~ie_env.web.cli` is ``ie-web``.
"""
