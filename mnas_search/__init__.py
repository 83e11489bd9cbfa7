"""The search system: datasets, the proxy task, the child trainer, backends, the loop and reports.

Importing the package imports nothing heavy: each module imports TF and Keras only when it needs
them, so that worker processes and the CLI start fast. Import the modules directly, e.g.
`from mnas_search import trainer` or `from mnas_search.proxy import ProxyTask`.
"""
