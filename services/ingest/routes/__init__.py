"""The API's routes, one module per resource (contract §6); each module's
`add_routes(app)` wires its handlers, and `create_app` calls them all."""
