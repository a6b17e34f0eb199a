"""The domain core the appliance and the central store share: pure facts and functions only.

Each fact is defined once here: the purposes and the languages (`purposes.py`), the sync wire's
signatures (`wire.py`) and its events, their kinds and their validation (`events.py`), segment
rules and the one definition of a new and a returning visitor (`segment_rules.py`), audience
normalization and hashing for Meta and Google (`audience.py`), the MAC pattern and the
randomized-address test (`macs.py`), the times stored and sent (`times.py`), and whole numbers
read from requests (`numbers.py`).

Nothing in this package imports a database, a web framework or a capture library, nor any
module of Footfall outside it: only the standard library (tests/test_core.py checks it). So
`central/` uses it without loading the appliance's database (portal.db, portal.models).
"""
