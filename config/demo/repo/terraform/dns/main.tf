# DNS records. terraform_data cannot ask a real DNS provider, so the "live"
# record is a file outside the repository (scripts/demo's live/dns/www.txt).
# scripts/demo changes that file after the apply, as someone editing the
# record in the provider's console would: DRIFTED (origin outside).
locals {
  live_record = "@DEMO_DIR@/live/dns/www.txt"
}

resource "terraform_data" "www" {
  input = {
    name    = "www.shop.example.com"
    type    = "A"
    address = fileexists(local.live_record) ? trimspace(file(local.live_record)) : "absent"
  }
}
