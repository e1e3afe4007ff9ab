# The shop application. scripts/demo commits a version bump here after the
# last apply, so git says something that is not applied: DRIFTED (origin config).
resource "terraform_data" "shop" {
  input = {
    image    = "registry.example.com/shop:1.4.2"
    replicas = 3
  }
}

resource "terraform_data" "queue" {
  input = {
    name       = "orders"
    visibility = 30
  }
}
