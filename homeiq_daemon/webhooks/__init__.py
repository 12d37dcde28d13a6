"""Webhook pushes: rules matched on every state change, signed POSTs through a durable outbox.

Layers: ``config`` (typed settings), ``rules`` (sans-IO matching, timers injected), ``signing`` (Standard
Webhooks, pure), ``payload`` (body bytes and delivery ids), ``client`` (the only aiohttp client here),
``dispatcher`` (retries, order, concurrency), ``service`` (the component the app starts and stops).
Importing this package is cheap: nothing here imports aiohttp until a service is built.
"""
