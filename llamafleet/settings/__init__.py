"""A stack's `llamafleet:*` settings: their typed shape (`schema`, composing the components'
configs), the rules that join sections (`rules`), the names built from them (`names`), and
loading with one clear line per problem (`load`). No Pulumi resource is declared here."""
