"""Access control: policies of prefix rules, tokens that hold policies, and the authorizer that
decides what a token may do (``konsul.acl.rules``). The replicated tables live in the store
(``konsul.store.acl``); the HTTP side (token carriers, the per-route check, ``/acl``) in
``konsul.api.acl``."""
