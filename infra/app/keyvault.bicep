// Key Vault for the upstream providers' API keys. Authorization is Azure RBAC only (no access
// policies). This template never writes a secret: operators upload them after provisioning
// (docs/deployment.md), with Key Vault Secrets Officer; the app reads them with Key Vault
// Secrets User (rbac.bicep).

param name string
param location string
param tags object

@description('Purge protection: irreversible once on. On in prod, off in dev/staging so a torn-down environment can be purged.')
param enablePurgeProtection bool

@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int

@description('Disabled requires private networking (VNet integration and a private endpoint), which this template does not create.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // The API refuses `false` once purge protection has been on; `null` leaves it off.
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
    }
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
