"""casework: the domain model and services of big-illness special treatment (大病专项救治) cases.

Nothing in this package knows of Flask or HTTP: services take a SQLAlchemy session and an actor,
and raise the errors in :mod:`casework.errors`.
"""
