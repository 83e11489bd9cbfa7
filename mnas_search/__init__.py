"""The search system, in layers from the bottom up.

util -> runs, data, costs -> training -> execution -> search, scaling -> analysis -> cli.
A package imports only packages in lower layers (tests/test_layers.py checks it). Importing a
package imports nothing heavy: modules import TF and Keras only when they need them, so worker
processes and the CLI start fast. Import the modules directly, e.g.
`from mnas_search.training import evaluation` or `from mnas_search.training.proxy import ProxyTask`.
"""
