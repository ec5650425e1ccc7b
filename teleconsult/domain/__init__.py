"""Pure domain: entities, state machines, policies. No I/O framework may be imported here."""
