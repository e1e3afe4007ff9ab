# State lives OUTSIDE the repository (scripts/demo fills in the directory).
# driftwatch plans in its own checkout, so a relative state path would point
# at an empty state there and every resource would read as "to create".
terraform {
  backend "local" {
    path = "@DEMO_DIR@/terraform-state/dns.tfstate"
  }
}
