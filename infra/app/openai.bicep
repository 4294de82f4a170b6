// Optional Azure OpenAI account with model deployments. Keys are disabled: the gateway calls it
// with its managed identity (Cognitive Services OpenAI User, rbac.bicep), so no key exists to leak.

param name string
param location string
param tags object

@description('Model deployments: [{ name, model, version, skuName?, capacity? }]. capacity is in thousands of tokens per minute.')
param deployments array

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

// One at a time: the service rejects concurrent deployment operations on one account.
@batchSize(1)
resource modelDeployments 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = [for item in deployments: {
  parent: account
  name: item.name
  sku: {
    name: item.?skuName ?? 'GlobalStandard'
    capacity: item.?capacity ?? 10
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: item.model
      version: item.version
    }
  }
}]

output name string = account.name
output endpoint string = account.properties.endpoint
