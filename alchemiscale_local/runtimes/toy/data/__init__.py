"""Real gufe components (tyk2 protein, solvent, 64 ligands) that toy networks are built from.

See make_components.py for where they come from; load them with
``alchemiscale_local.runtimes.toy.network.load_components``.
"""
