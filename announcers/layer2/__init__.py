"""Layer-2 announcement: answers ARP and NDP for the service addresses this node wins.

``plugin`` is the entry point (hooks and the announcer), ``responder`` the
raw-socket ARP/NDP loop, ``packets`` the frame parsing and templates, and
``netlink`` the interface watcher.
"""
