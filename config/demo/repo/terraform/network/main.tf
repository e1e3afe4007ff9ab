# The network stack: applied and untouched since, so IN SYNC.
# terraform_data is built into Terraform (>= 1.4): no provider to download.
resource "terraform_data" "vpc" {
  input = {
    name = "demo"
    cidr = "10.20.0.0/16"
  }
}

resource "terraform_data" "subnet" {
  for_each = { a = "10.20.1.0/24", b = "10.20.2.0/24" }
  input = {
    vpc  = terraform_data.vpc.output.name
    cidr = each.value
  }
}
