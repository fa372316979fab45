# SpinKube: cert-manager, the shim on the nodes (kwasm-operator), spin-operator's CRDs, the
# wasmtime-spin-v2 RuntimeClass and the operator. The SpinAppExecutor is a custom resource, so it
# is applied with the app (envs/*/app): kubernetes_manifest needs its CRD at plan time.

locals {
  release_url = "https://github.com/spinkube/spin-operator/releases/download/v${var.spin_operator_version}"

  runtime_class = {
    apiVersion = "node.k8s.io/v1"
    kind       = "RuntimeClass"
    metadata = {
      name = "wasmtime-spin-v2"
    }
    handler = "spin"
    scheduling = {
      nodeSelector = var.wasm_node_selector
    }
  }
}

resource "helm_release" "cert_manager" {
  name             = "cert-manager"
  namespace        = "cert-manager"
  create_namespace = true
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = var.cert_manager_chart_version
  wait             = true

  values = [yamlencode({
    crds = {
      enabled = true
    }
  })]
}

resource "helm_release" "kwasm_operator" {
  count = var.install_kwasm_operator ? 1 : 0

  name             = "kwasm-operator"
  namespace        = "kwasm"
  create_namespace = true
  repository       = "http://kwasm.sh/kwasm-operator/"
  chart            = "kwasm-operator"
  version          = var.kwasm_operator_chart_version

  values = [yamlencode({
    kwasmOperator = {
      installerImage = var.shim_installer_image
    }
  })]
}

# The CRDs of the pinned release, as published with it (the chart does not carry them).
data "http" "spin_operator_crds" {
  url = "${local.release_url}/spin-operator.crds.yaml"

  lifecycle {
    postcondition {
      condition     = self.status_code == 200
      error_message = "cannot fetch the spin-operator CRDs of the pinned release"
    }
  }
}

resource "kubernetes_manifest" "spin_operator_crds" {
  for_each = {
    for crd in provider::kubernetes::manifest_decode_multi(data.http.spin_operator_crds.response_body) :
    crd.metadata.name => crd
  }

  manifest = each.value
}

resource "kubernetes_manifest" "runtime_class" {
  manifest = local.runtime_class
}

resource "helm_release" "spin_operator" {
  name             = "spin-operator"
  namespace        = "spin-operator"
  create_namespace = true
  repository       = "oci://ghcr.io/spinkube/charts"
  chart            = "spin-operator"
  version          = var.spin_operator_version
  wait             = true

  depends_on = [
    helm_release.cert_manager,
    kubernetes_manifest.spin_operator_crds,
    kubernetes_manifest.runtime_class,
  ]
}
